//! A WebAssembly component that exports nothing refract knows: loading it
//! must fail with a "wrong world" error that names what it does export.

/// Not exported to the host; the component has no refract interface.
pub fn nothing() -> u32 {
    42
}
