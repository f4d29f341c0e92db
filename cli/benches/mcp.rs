//! `cargo bench -p tollgate-cli --bench mcp`: the latency the MCP gateway adds to a `tools/call`.
//!
//! The real reference server (`@modelcontextprotocol/server-everything`, installed by
//! `scripts/setup`) answers `echo`; each call is timed from the first byte written to the last
//! byte of its response read, one call at a time, by a minimal client written here (newline JSON
//! over stdio; HTTP/1.1 keep-alive over loopback). Four arms, each after a warm-up:
//!
//! - stdio, direct: the client starts the server and calls it;
//! - stdio, gateway: the client starts `tollgate mcp -- server`, which decides, audits (the
//!   default `--sync batch`) and relays each call;
//! - HTTP, direct: the server's own Streamable HTTP transport;
//! - HTTP, gateway: `tollgate mcp serve` (Streamable HTTP, bearer credential) in front of the
//!   server over stdio.
//!
//! The added latency is the gateway arm's percentile minus the direct arm's; the HTTP gateway is
//! also set against the server called directly over stdio (`http/stdio`), which is how the
//! gateway reaches it. Set
//! `TOLLGATE_MCP_CALLS` to change the number of calls per arm (default 10,000). The arms run
//! in blocks of 500 calls, one arm after the other (each block after 20 untimed calls), so that
//! all four meet the same machine while each stays warm within its block.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const WARM_UP: usize = 300;
/// Timed calls per arm in a row, and untimed calls before them.
const BLOCK: usize = 500;
const BLOCK_WARM_UP: usize = 20;

const POLICY: &str = r#"
domain demo { public }
tool everything.echo {
    domain demo
    effect read
    args { message: string }
}
agent bench {
    roles [caller]
    credential_ttl 1h
}
echo: permit agent bench to call everything.echo;
no_secrets: forbid any to call everything.echo when args.message contains "secret";
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn server() -> PathBuf {
    let path = root().join("tests/mcp/node_modules/.bin/mcp-server-everything");
    assert!(
        path.exists(),
        "the MCP servers are not installed: run `bash scripts/setup`"
    );
    path
}

fn tollgate(args: &[&str]) {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn setup() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-mcp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policy")).unwrap();
    std::fs::write(dir.join("policy/bench.toll"), POLICY).unwrap();
    let path = |file: &str| dir.join(file).display().to_string();
    for key in ["compiler", "issuer", "gate"] {
        tollgate(&["keygen", &path(key)]);
    }
    tollgate(&[
        "compile",
        &path("policy"),
        "-o",
        &path("policy.tgt"),
        "--key",
        &path("compiler.key"),
    ]);
    tollgate(&[
        "issue",
        "--table",
        &path("policy.tgt"),
        "--agent",
        "bench",
        "--ttl",
        "1h",
        "--key",
        &path("issuer.key"),
        "-o",
        &path("bench.cred"),
    ]);
    dir
}

fn gate_flags(dir: &Path, name: &str) -> Vec<String> {
    let path = |file: &str| dir.join(file).display().to_string();
    vec![
        "--table".into(),
        path("policy.tgt"),
        "--compiler-key".into(),
        path("compiler.pub"),
        "--issuer-key".into(),
        path("issuer.pub"),
        "--gate-key".into(),
        path("gate.key"),
        "--audit".into(),
        path(&format!("{name}.log")),
        "--state".into(),
        path(&format!("{name}-state")),
    ]
}

fn initialize(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"bench","version":"1"}}}}}}"#
    )
}

fn echo(id: usize) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"call {id}"}}}}}}"#
    )
}

fn prefixed_echo(id: usize) -> String {
    echo(id).replace(r#""name":"echo""#, r#""name":"everything.echo""#)
}

/// A client of a server started over stdio.
struct StdioClient {
    child: Child,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
    line: String,
}

impl StdioClient {
    fn start(mut command: Command) -> StdioClient {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut client = StdioClient {
            child,
            input,
            output,
            line: String::new(),
        };
        writeln!(client.input, "{}", initialize(0)).unwrap();
        client.answer(0);
        writeln!(
            client.input,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )
        .unwrap();
        client
    }

    fn answer(&mut self, id: usize) {
        loop {
            self.line.clear();
            assert!(
                self.output.read_line(&mut self.line).unwrap() > 0,
                "the server exited"
            );
            if self.line.contains(&format!(r#""id":{id},"#))
                || self.line.contains(&format!(r#""id":{id}}}"#))
            {
                assert!(!self.line.contains("isError\":true"), "{}", self.line);
                return;
            }
        }
    }

    /// One echo call, timed from the first byte written to the answer read.
    fn call(&mut self, id: usize) -> Duration {
        let started = Instant::now();
        self.input.write_all(echo(id).as_bytes()).unwrap();
        self.input.write_all(b"\n").unwrap();
        self.input.flush().unwrap();
        self.answer(id);
        started.elapsed()
    }

    fn stop(self) {
        drop(self.input);
        stop(self.child);
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One HTTP/1.1 connection, kept alive.
struct Http {
    stream: BufReader<TcpStream>,
    host: String,
    headers: Vec<(String, String)>,
}

impl Http {
    fn connect(address: &str) -> Http {
        let stream = loop {
            match TcpStream::connect(address) {
                Ok(stream) => break stream,
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_nodelay(true).unwrap();
        Http {
            stream: BufReader::new(stream),
            host: address.to_owned(),
            headers: Vec::new(),
        }
    }

    /// POSTs one message to /mcp; the response's headers and body (an SSE stream read to its
    /// end, or JSON).
    fn post(&mut self, body: &str) -> (Vec<(String, String)>, String) {
        let mut request = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.get_mut().write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 2"), "{line}");
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).unwrap();
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(length) = header("content-length") {
            body.resize(length.parse().unwrap(), 0);
            self.stream.read_exact(&mut body).unwrap();
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                line.clear();
                self.stream.read_line(&mut line).unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        (headers, String::from_utf8(body).unwrap())
    }
}

/// A Streamable HTTP client, initialized.
struct HttpClient {
    http: Http,
    prefixed: bool,
}

impl HttpClient {
    fn start(address: &str, bearer: Option<String>, prefixed: bool) -> HttpClient {
        let mut client = Http::connect(address);
        if let Some(token) = bearer {
            client
                .headers
                .push(("Authorization".into(), format!("Bearer {token}")));
        }
        let (headers, _) = client.post(&initialize(0));
        if let Some((_, session)) = headers.iter().find(|(n, _)| n == "mcp-session-id") {
            client
                .headers
                .push(("Mcp-Session-Id".into(), session.clone()));
        }
        client
            .headers
            .push(("MCP-Protocol-Version".into(), "2025-11-25".into()));
        client.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        HttpClient {
            http: client,
            prefixed,
        }
    }

    fn call(&mut self, id: usize) -> Duration {
        let message = if self.prefixed {
            prefixed_echo(id)
        } else {
            echo(id)
        };
        let started = Instant::now();
        let (_, body) = self.http.post(&message);
        let elapsed = started.elapsed();
        assert!(body.contains(&format!("call {id}")), "{body}");
        elapsed
    }
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort();
    let index = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let calls: usize = std::env::var("TOLLGATE_MCP_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let server = server();
    let dir = setup();
    let credential = std::fs::read_to_string(dir.join("bench.cred"))
        .unwrap()
        .trim()
        .to_owned();

    let mut gateway = Command::new(BIN);
    gateway
        .arg("mcp")
        .args(gate_flags(&dir, "stdio"))
        .args([
            "--credential",
            &dir.join("bench.cred").display().to_string(),
        ])
        .args(["--prefix", "everything", "--"])
        .arg(&server);
    let http_port = free_port();
    let direct_server = Command::new(&server)
        .arg("streamableHttp")
        .env("PORT", http_port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gateway_port = free_port();
    let serve = Command::new(BIN)
        .args(["mcp", "serve"])
        .args(gate_flags(&dir, "http"))
        .args(["--listen", &format!("127.0.0.1:{gateway_port}")])
        .args(["--upstream", &format!("everything={}", server.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut direct_stdio_client = StdioClient::start(Command::new(&server));
    let mut gateway_stdio_client = StdioClient::start(gateway);
    let mut direct_http_client = HttpClient::start(&format!("127.0.0.1:{http_port}"), None, false);
    let mut gateway_http_client =
        HttpClient::start(&format!("127.0.0.1:{gateway_port}"), Some(credential), true);
    // In blocks: each arm in turn makes BLOCK timed calls after a short warm-up of its own, so
    // every arm meets the same machine over the run while its processes stay warm in a block.
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    for _ in 0..WARM_UP {
        direct_stdio_client.call(next());
        gateway_stdio_client.call(next());
        direct_http_client.call(next());
        gateway_http_client.call(next());
    }
    let mut done = 0;
    while done < calls {
        let block = BLOCK.min(calls - done);
        for (arm, times) in times.iter_mut().enumerate() {
            for round in 0..BLOCK_WARM_UP + block {
                let time = match arm {
                    0 => direct_stdio_client.call(next()),
                    1 => gateway_stdio_client.call(next()),
                    2 => direct_http_client.call(next()),
                    _ => gateway_http_client.call(next()),
                };
                if round >= BLOCK_WARM_UP {
                    times.push(time);
                }
            }
        }
        done += block;
    }
    direct_stdio_client.stop();
    gateway_stdio_client.stop();
    stop(direct_server);
    stop(serve);
    let [mut direct_stdio, mut gateway_stdio, mut direct_http, mut gateway_http] = times;

    println!("MCP gateway latency, {calls} sequential tools/call `echo` per arm, arms in alternating blocks of {BLOCK} (server-everything 2026.8.31), after {WARM_UP} warm-up calls");
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>12} {:>14} {:>14}",
        "transport",
        "direct p50",
        "direct p99",
        "gateway p50",
        "gateway p99",
        "added p50",
        "added p99"
    );
    // The HTTP gateway reaches the server over stdio, so its own cost is also stated against the
    // server called directly over stdio (the server's own HTTP transport is slower than both).
    let mut direct_stdio_again = direct_stdio.clone();
    let mut gateway_http_again = gateway_http.clone();
    for (name, direct, gateway) in [
        ("stdio", &mut direct_stdio, &mut gateway_stdio),
        ("http", &mut direct_http, &mut gateway_http),
        (
            "http/stdio",
            &mut direct_stdio_again,
            &mut gateway_http_again,
        ),
    ] {
        let (d50, d99) = (percentile(direct, 0.50), percentile(direct, 0.99));
        let (g50, g99) = (percentile(gateway, 0.50), percentile(gateway, 0.99));
        println!(
            "{:<10} {:>10.1}µs {:>10.1}µs {:>10.1}µs {:>10.1}µs {:>12.1}µs {:>12.1}µs",
            name,
            micros(d50),
            micros(d99),
            micros(g50),
            micros(g99),
            micros(g50) - micros(d50),
            micros(g99) - micros(d99)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
