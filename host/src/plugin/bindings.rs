//! The host's one `bindgen!`, generated from `wit/` (world `plugins`, which
//! includes every plugin world).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "refract:plugin/plugins",
    // A log flood ends the call with a trap.
    imports: { "refract:plugin/log.write": trappable },
});
