//! `hostile`: attacks its sandbox. `{"attack": A, "path": P, "n": N}`.
//!
//! Attacks that a limit must stop never return normally: `loop`, `memory`, `recursion`,
//! `output` (returns `n` bytes), `children` (starts `n` children of flow P), `chatty`
//! (reads the host clock `n` times: `n` journaled host calls). Attacks the sandbox must
//! deny return what the guest saw, as `{"ok": …}` or `{"denied": "<error>"}`: `read`
//! (read file P), `write` (write file P), `list` (list directory P), `socket` (connect to
//! 127.0.0.1:P), `env` (environment variables and arguments), `clock` (WASI wall clock,
//! seconds), `print` (write `n` lines to stdout and stderr). For benchmarks: `fib` (n-th
//! Fibonacci number, recursively) and `sieve` (primes up to n).

use std::io::Write;

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    attack: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    n: u64,
}

fn report<T: std::fmt::Debug>(r: std::io::Result<T>) -> Value {
    match r {
        Ok(v) => json!({ "ok": format!("{v:?}") }),
        Err(e) => json!({ "denied": e.to_string() }),
    }
}

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn sieve(n: usize) -> usize {
    let mut composite = vec![false; n + 1];
    let mut primes = 0;
    for i in 2..=n {
        if !composite[i] {
            primes += 1;
            let mut j = i * i;
            while j <= n {
                composite[j] = true;
                j += i;
            }
        }
    }
    primes
}

/// Small frames on the wasm call stack, so the call stack itself overflows.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    std::hint::black_box(1 + recurse(std::hint::black_box(depth + 1)))
}

fn hostile(ctx: &Ctx, input: Input) -> Result<Value> {
    Ok(match input.attack.as_str() {
        "loop" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard = Vec::new();
            loop {
                hoard.push(vec![7u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recursion" => json!(recurse(0)),
        // CPU-bound work for benchmarks: call-heavy and loop-heavy.
        "fib" => json!(fib(std::hint::black_box(input.n))),
        "sieve" => json!(sieve(input.n as usize)),
        "output" => json!("x".repeat(input.n as usize)),
        "children" => {
            for i in 0..input.n {
                let _ = ctx.start(&input.path, &json!({ "name": format!("c{i}") }))?;
            }
            json!(input.n)
        }
        "chatty" => json!((0..input.n).map(|_| ctx.now_ms()).fold(0u64, u64::wrapping_add)),
        "read" => report(std::fs::read_to_string(&input.path)),
        "write" => report(std::fs::write(&input.path, b"written by a flow")),
        "list" => report(std::fs::read_dir(&input.path).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>())),
        "socket" => report(std::net::TcpStream::connect(("127.0.0.1", input.n as u16))),
        "env" => json!({ "vars": std::env::vars().count(), "args": std::env::args().count() }),
        "clock" => json!(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX)),
        "print" => {
            for i in 0..input.n {
                println!("stdout line {i}");
                let _ = writeln!(std::io::stderr(), "stderr line {i}");
            }
            json!(input.n)
        }
        other => return Err(format!("unknown attack `{other}`").into()),
    })
}

sluice_flow::flow!(hostile);
