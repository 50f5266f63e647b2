//! Bundling a handler with its npm packages, with rolldown: one ES module
//! whose default export is the handler, the form the engine compiles for a
//! function without packages too.
//!
//! The entry is the user's code after [`transform`](super::transform) (so
//! its errors were already reported at `handler.ts` positions); it is served
//! from memory as `<tree>/handler.js`, so its imports resolve in the
//! lockfile's `node_modules` tree by the bundler's ordinary Node resolution,
//! ESM and CommonJS alike. A plugin refuses Node's built-in modules, which
//! Plat's JavaScript runtime does not provide.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rolldown::plugin::{
    HookLoadArgs, HookLoadOutput, HookLoadReturn, HookResolveIdArgs, HookResolveIdOutput,
    HookResolveIdReturn, HookUsage, Plugin, PluginContext, SharedLoadPluginContext,
};
use rolldown::{
    Bundler, BundlerOptions, CodeSplittingMode, InputItem, OutputFormat, Platform, SourceMapType,
};
use rolldown_common::Output;

use super::position_map::PositionMap;
use super::transform::USER_FILE;

/// The entry's specifier, before the plugin gives it its path in the tree.
const ENTRY: &str = "plat:handler";
/// The entry's file name inside the tree (never written to disk).
const ENTRY_FILE: &str = "handler.js";

/// Node's built-in modules (Node 20's `require('module').builtinModules`,
/// without the internal `_` ones); any `node:` specifier counts too.
const NODE_BUILTINS: &[&str] = &[
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "constants",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "domain",
    "events",
    "fs",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "perf_hooks",
    "process",
    "punycode",
    "querystring",
    "readline",
    "repl",
    "stream",
    "string_decoder",
    "sys",
    "timers",
    "tls",
    "trace_events",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "wasi",
    "worker_threads",
    "zlib",
];

/// A bundled handler: the module's JavaScript and a map from its positions
/// to `handler.ts` (only the user's own code maps; packages' lines do not).
#[derive(Debug)]
pub(crate) struct Bundled {
    pub(crate) javascript: String,
    pub(crate) map: PositionMap,
}

/// Bundles `javascript` (the transformed handler, with `map` back to
/// `handler.ts`) with the packages under `tree/node_modules`. `Err` is a
/// message for the user.
pub(crate) async fn bundle(
    tree: &Path,
    javascript: &str,
    map: &PositionMap,
) -> Result<Bundled, String> {
    let entry_id = tree.join(ENTRY_FILE).to_string_lossy().into_owned();
    let refusal = Arc::new(Mutex::new(None));
    let plugin = PlatModules {
        entry_id: entry_id.clone(),
        entry_code: javascript.to_owned(),
        refusal: refusal.clone(),
    };
    let options = BundlerOptions {
        input: Some(vec![InputItem {
            name: Some("handler".to_owned()),
            import: ENTRY.to_owned(),
        }]),
        cwd: Some(tree.to_path_buf()),
        // The runtime is closest to a browser: no Node built-ins, and
        // packages' `browser` builds are the ones written for that.
        platform: Some(Platform::Browser),
        format: Some(OutputFormat::Esm),
        code_splitting: Some(CodeSplittingMode::Bool(false)),
        sourcemap: Some(SourceMapType::Hidden),
        // Packages test `process.env.NODE_ENV`, and the runtime has no `process`.
        define: Some(
            [(
                "process.env.NODE_ENV".to_owned(),
                "\"production\"".to_owned(),
            )]
            .into_iter()
            .collect(),
        ),
        ..BundlerOptions::default()
    };
    let mut bundler = Bundler::with_plugins(options, vec![Arc::new(plugin)])
        .map_err(|errors| describe(&errors, &refusal))?;
    let output = bundler
        .generate()
        .await
        .map_err(|errors| describe(&errors, &refusal))?;
    let _ = bundler.close().await;
    let chunk = output
        .assets
        .into_iter()
        .find_map(|asset| match asset {
            Output::Chunk(chunk) if chunk.is_entry => Some(chunk),
            _ => None,
        })
        .ok_or_else(|| format!("{USER_FILE}: error: bundling produced no module"))?;
    let map = chunk
        .map
        .as_ref()
        .map(|bundle_map| {
            let handler_source = bundle_map.get_sources().position(|source| {
                source.ends_with(ENTRY_FILE) && !source.contains("node_modules")
            });
            PositionMap::from_tokens(bundle_map.get_tokens().filter_map(|token| {
                let source = token.get_source_id()?;
                if Some(source as usize) != handler_source {
                    return None;
                }
                let (line, column) = map.lookup(token.get_src_line(), token.get_src_col())?;
                Some([token.get_dst_line(), token.get_dst_col(), line, column])
            }))
        })
        .unwrap_or_default();
    Ok(Bundled {
        javascript: chunk.code.clone(),
        map,
    })
}

/// The user's message for a failed bundle: the plugin's own refusal when it
/// made one, else rolldown's diagnostics.
fn describe(
    errors: &rolldown_error::BatchedBuildDiagnostic,
    refusal: &Mutex<Option<String>>,
) -> String {
    if let Some(refusal) = refusal.lock().expect("not poisoned").take() {
        return refusal;
    }
    let described: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    format!(
        "{USER_FILE}: error: bundling the npm packages failed:\n{}",
        described.join("\n")
    )
}

/// Serves the entry from memory and refuses Node built-ins.
#[derive(Debug)]
struct PlatModules {
    entry_id: String,
    entry_code: String,
    refusal: Arc<Mutex<Option<String>>>,
}

impl Plugin for PlatModules {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("plat:modules")
    }

    fn register_hook_usage(&self) -> HookUsage {
        HookUsage::ResolveId | HookUsage::Load
    }

    async fn resolve_id(
        &self,
        _ctx: &PluginContext,
        args: &HookResolveIdArgs<'_>,
    ) -> HookResolveIdReturn {
        if args.specifier == ENTRY {
            return Ok(Some(HookResolveIdOutput::from_id(self.entry_id.as_str())));
        }
        if let Some(builtin) = node_builtin(args.specifier) {
            let importer = match args.importer {
                Some(importer) if importer != self.entry_id => {
                    format!("package `{}`", package_of(importer))
                }
                _ => USER_FILE.to_owned(),
            };
            let message = format!(
                "{importer} imports the Node built-in `{builtin}`, which Plat's JavaScript \
                 runtime does not provide"
            );
            let mut refusal = self.refusal.lock().expect("not poisoned");
            refusal.get_or_insert_with(|| message.clone());
            return Err(anyhow::anyhow!(message));
        }
        Ok(None)
    }

    async fn load(&self, _ctx: SharedLoadPluginContext, args: &HookLoadArgs<'_>) -> HookLoadReturn {
        if args.id != self.entry_id {
            return Ok(None);
        }
        Ok(Some(HookLoadOutput {
            code: self.entry_code.as_str().into(),
            ..HookLoadOutput::default()
        }))
    }
}

/// The built-in `specifier` names (`fs` for `node:fs/promises`), if any.
fn node_builtin(specifier: &str) -> Option<&str> {
    if let Some(rest) = specifier.strip_prefix("node:") {
        return Some(rest.split('/').next().unwrap_or(rest));
    }
    let first = specifier.split('/').next()?;
    NODE_BUILTINS.contains(&first).then_some(first)
}

/// The package a file of the tree belongs to: the name after its last
/// `node_modules/` (`@scope/name` or `name`).
fn package_of(path: &str) -> String {
    let Some(at) = path.rfind("node_modules/") else {
        return path.to_owned();
    };
    let rest = &path[at + "node_modules/".len()..];
    let mut parts = rest.split('/');
    match (parts.next(), parts.next()) {
        (Some(scope), Some(name)) if scope.starts_with('@') => format!("{scope}/{name}"),
        (Some(name), _) => name.to_owned(),
        _ => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{node_builtin, package_of};

    #[test]
    fn node_builtins_are_recognised_with_and_without_the_prefix() {
        assert_eq!(node_builtin("fs"), Some("fs"));
        assert_eq!(node_builtin("fs/promises"), Some("fs"));
        assert_eq!(node_builtin("node:crypto"), Some("crypto"));
        assert_eq!(node_builtin("zod"), None);
        assert_eq!(node_builtin("./path"), None);
    }

    #[test]
    fn a_tree_path_names_its_package() {
        assert_eq!(
            package_of("/s/trees/h/node_modules/.plat/a@1.0.0/node_modules/a/lib/x.js"),
            "a"
        );
        assert_eq!(
            package_of("/s/node_modules/.plat/@s+b@2.0.0/node_modules/@s/b/index.js"),
            "@s/b"
        );
    }
}
