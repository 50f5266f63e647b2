// `sqlx::migrate!` embeds the migrations at compile time, but cargo does not
// know the macro read that folder: without this, a new migration would not
// rebuild the crate and would silently be missing from the binaries.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
