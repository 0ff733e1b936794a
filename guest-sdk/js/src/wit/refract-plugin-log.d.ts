// Generated from wit/ by bin/wit-types.mjs: do not edit.
declare module 'refract:plugin/log@0.1.0' {
  /**
   * Writes one message. Long messages are truncated by the host.
   */
  export function write(level: Level, message: string): void;
  /**
   * How important a message is, from least to most.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * Very detailed tracing, normally filtered out.
   * ## `"debug"`
   * 
   * Information useful while developing the plugin.
   * ## `"info"`
   * 
   * Normal operational messages.
   * ## `"warn"`
   * 
   * Something unexpected that the plugin could handle.
   * ## `"error"`
   * 
   * Something failed.
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
