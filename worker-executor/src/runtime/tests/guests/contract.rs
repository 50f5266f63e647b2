// Mimics the compiler's generated main: input "error" → handler error (exit
// 1), "panic" → panic (exit 101), anything not a JSON string → exit 65.
use std::io::{Read, Write};

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let _ = write!(std::io::stdout(), "{info}");
        let _ = std::io::stdout().flush();
        std::process::exit(101);
    }));
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("read stdin");
    let Some(word) = input
        .trim()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
    else {
        print!("invalid input: expected a string");
        std::process::exit(65);
    };
    match word {
        "error" => {
            print!("something went wrong");
            std::process::exit(1);
        }
        "panic" => panic!("the handler panicked"),
        _ => print!("\"{word}\""),
    }
}
