//! Reading Server-Sent Events from a node: one event (its name and JSON data) at a time.

use serde_json::Value;

/// One event of a stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// Its name (`event:`), `message` when none was given.
    pub name: String,
    /// Its data, as JSON (a string when it is not JSON).
    pub data: Value,
}

/// The events of one streamed response, in order.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Read the events of `response`.
    pub fn new(response: reqwest::Response) -> Self {
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Ok(Some(event));
                }
                continue; // a comment (keep-alive)
            }
            match self.response.chunk().await? {
                Some(bytes) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                None => return Ok(None),
            }
        }
    }
}

fn parse(block: &str) -> Option<SseEvent> {
    let mut name = None;
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
        }
    }
    if name.is_none() && data.is_empty() {
        return None;
    }
    let text = data.join("\n");
    Some(SseEvent {
        name: name.unwrap_or_else(|| "message".into()),
        data: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    })
}
