//! Reading Server-Sent Events (the API's live streams), for the CLI and the
//! tests: the event-stream format of the HTML standard
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>),
//! fed with the response body's chunks as they arrive.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; `message` when the server sent none.
    pub event: String,
    /// The `data:` lines, joined with newlines.
    pub data: String,
    /// The last `id:` seen on the stream so far (what a reconnecting client
    /// sends as `Last-Event-ID`).
    pub id: Option<String>,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting this one belongs to it.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry_ms: Option<u64>,
}

impl Parser {
    /// Takes the next bytes of the stream; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    events.extend(self.line_done(&String::from_utf8_lossy(&line)));
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    /// The last `retry:` the server asked for, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// The last event id seen (for `Last-Event-ID`).
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    fn line_done(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            return Some(Event {
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
                id: self.last_id.clone(),
            });
        }
        if line.starts_with(':') {
            return None; // A comment (keep-alive).
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_endings_are_read_whole() {
        let mut parser = Parser::default();
        let mut events = parser.feed(b"retry: 2000\n\n: keep-alive\r\nevent: sta");
        events.extend(parser.feed(b"tus\r"));
        events.extend(parser.feed(b"\ndata: {\"a\":\ndata: 1}\nid: 7\n\ndata: x\n\n"));
        assert_eq!(
            events,
            vec![
                Event {
                    event: "status".to_owned(),
                    data: "{\"a\":\n1}".to_owned(),
                    id: Some("7".to_owned()),
                },
                Event {
                    event: "message".to_owned(),
                    data: "x".to_owned(),
                    id: Some("7".to_owned()),
                },
            ]
        );
        assert_eq!(parser.retry_ms(), Some(2000));
        assert_eq!(parser.last_id(), Some("7"));
    }
}
