//! A TypeScript function's module: a few hundred bytes that link against the
//! shared engine instead of carrying a copy of it (1.7 MB) per function.
//!
//! ```text
//! (import "plat:js-engine" "cabi_realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
//! (import "plat:js-engine" "plat_invoke"  (func $invoke (param i32 i32 i32 i32)))
//! (import "plat:js-engine" "memory"       (memory 0))
//! (func $_start (local $code i32) (local $map i32)
//!   ;; for the bytecode (segment 0) and the position map (segment 1):
//!   ;; allocate in the engine, memory.init into it, data.drop
//!   (call $invoke (local.get $code) (i32.const CODE_LEN) (local.get $map) (i32.const MAP_LEN)))
//! (export "_start" (func $_start)) (export "memory" (memory 0))
//! (data passive "<bytecode>") (data passive "<map>")
//! (@custom "plat.js-engine-sha256" "<hex>")
//! ```
//!
//! Passive segments plus `memory.init` put the bytes wherever the engine's
//! allocator says, at instantiation cost proportional to their size only.

use plat_common::js_module::{ENGINE_IMPORT_MODULE, ENGINE_SECTION, INVOKE, MEMORY, REALLOC};
use wasm_encoder::{
    CodeSection, CustomSection, DataCountSection, DataSection, EntityType, ExportKind,
    ExportSection, Function, FunctionSection, ImportSection, MemoryType, Module, TypeSection,
    ValType,
};

const REALLOC_FUNC: u32 = 0;
const INVOKE_FUNC: u32 = 1;
const START_FUNC: u32 = 2;
const CODE_SEGMENT: u32 = 0;
const MAP_SEGMENT: u32 = 1;
const CODE_LOCAL: u32 = 0;
const MAP_LOCAL: u32 = 1;

/// Why the bytes cannot become a module: wasm32 lengths are 32-bit.
#[derive(Debug, thiserror::Error)]
#[error("the compiled function is too large ({0} bytes)")]
pub(crate) struct TooLarge(usize);

/// The function module for `bytecode` and its position `map`, linking
/// against the engine build `engine_sha256`.
pub(crate) fn emit(bytecode: &[u8], map: &[u8], engine_sha256: &str) -> Result<Vec<u8>, TooLarge> {
    let code_len = length(bytecode)?;
    let map_len = length(map)?;
    let mut module = Module::new();

    let mut types = TypeSection::new();
    let i32s = [ValType::I32; 4];
    types.ty().function(i32s, [ValType::I32]); // 0: realloc
    types.ty().function(i32s, []); // 1: invoke
    types.ty().function([], []); // 2: _start
    module.section(&types);

    let mut imports = ImportSection::new();
    imports.import(ENGINE_IMPORT_MODULE, REALLOC, EntityType::Function(0));
    imports.import(ENGINE_IMPORT_MODULE, INVOKE, EntityType::Function(1));
    imports.import(
        ENGINE_IMPORT_MODULE,
        MEMORY,
        EntityType::Memory(MemoryType {
            minimum: 0,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        }),
    );
    module.section(&imports);

    let mut functions = FunctionSection::new();
    functions.function(2);
    module.section(&functions);

    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, START_FUNC);
    exports.export(MEMORY, ExportKind::Memory, 0);
    module.section(&exports);

    module.section(&DataCountSection { count: 2 });

    let mut start = Function::new([(2, ValType::I32)]);
    copy_segment(&mut start, CODE_SEGMENT, code_len, CODE_LOCAL);
    copy_segment(&mut start, MAP_SEGMENT, map_len, MAP_LOCAL);
    start
        .instructions()
        .local_get(CODE_LOCAL)
        .i32_const(code_len)
        .local_get(MAP_LOCAL)
        .i32_const(map_len)
        .call(INVOKE_FUNC)
        .end();
    let mut code = CodeSection::new();
    code.function(&start);
    module.section(&code);

    let mut data = DataSection::new();
    data.passive(bytecode.iter().copied());
    data.passive(map.iter().copied());
    module.section(&data);

    module.section(&CustomSection {
        name: ENGINE_SECTION.into(),
        data: engine_sha256.as_bytes().into(),
    });
    Ok(module.finish())
}

/// `local = realloc(0, 0, 1, len); memory.init segment → local; data.drop`,
/// or `local = 0` for an empty segment (nothing to allocate).
fn copy_segment(function: &mut Function, segment: u32, len: i32, local: u32) {
    let mut sink = function.instructions();
    if len == 0 {
        sink.i32_const(0).local_set(local).data_drop(segment);
        return;
    }
    sink.i32_const(0)
        .i32_const(0)
        .i32_const(1)
        .i32_const(len)
        .call(REALLOC_FUNC)
        .local_set(local)
        .local_get(local)
        .i32_const(0)
        .i32_const(len)
        .memory_init(0, segment)
        .data_drop(segment);
}

fn length(bytes: &[u8]) -> Result<i32, TooLarge> {
    i32::try_from(bytes.len()).map_err(|_| TooLarge(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_a_valid_module_that_imports_only_the_engine() {
        let wasm = emit(b"bytecode", &[1, 2, 3, 4], "abc123").unwrap();
        wasmparser::Validator::new()
            .validate_all(&wasm)
            .expect("valid wasm");
        let imports: Vec<(String, String)> = wasmparser::Parser::new(0)
            .parse_all(&wasm)
            .filter_map(|payload| match payload.unwrap() {
                wasmparser::Payload::ImportSection(reader) => Some(
                    reader
                        .into_iter()
                        .map(|i| {
                            let i = i.unwrap();
                            (i.module.to_owned(), i.name.to_owned())
                        })
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(imports
            .iter()
            .all(|(module, _)| module == ENGINE_IMPORT_MODULE));
        assert_eq!(imports.len(), 3);
        assert!(wasm.len() < 300, "{} bytes", wasm.len());
    }

    #[test]
    fn an_empty_map_is_valid() {
        let wasm = emit(b"x", &[], "abc").unwrap();
        wasmparser::Validator::new()
            .validate_all(&wasm)
            .expect("valid wasm");
    }
}
