// Writes a 2 MiB JSON string, exiting 74 when stdout refuses it (as the
// compiler's generated main does).
use std::io::Write;

fn main() {
    let mut json = Vec::with_capacity(2 << 20);
    json.push(b'"');
    json.resize(2 << 20, b'a');
    json.push(b'"');
    let mut out = std::io::stdout().lock();
    if out.write_all(&json).and_then(|()| out.flush()).is_err() {
        std::process::exit(74);
    }
}
