//! `watch -i`: etcdctl 3.4's interactive watch. Command lines come from stdin (`watch KEY
//! [RANGE_END] [--prefix] [--rev N] [--prev-kv]`); every watch started runs until the process
//! ends, and its events are printed as the non-interactive `watch` prints them. Bad lines are
//! reported on stderr and skipped, bad flags end the process (exit 128), and the end of stdin ends
//! it with `Error: Error reading watch request line: EOF` (exit 3), all as etcdctl does.

use std::io::BufRead;

use keel_client::proto as p;
use keel_client::Client;
use tokio::sync::mpsc;

use crate::out::Printer;
use crate::{exit_error, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_INVALID_INPUT};

/// One watch request parsed from an interactive line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchLine {
    pub key: String,
    pub range_end: Option<String>,
    pub prefix: bool,
    pub rev: i64,
    pub prev_kv: bool,
}

/// What to do with one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineAction {
    /// Start this watch.
    Watch(WatchLine),
    /// Print this on stderr and read the next line.
    Skip(String),
    /// End the process: `Error: msg` on stderr, this exit code.
    Exit(i32, String),
}

/// pflag's parse of the watch flags on one interactive line: returns the positional arguments.
fn parse_flags(args: &[String], w: &mut WatchLine) -> Result<(Vec<String>, bool), String> {
    let mut pos = Vec::new();
    let mut it = args.iter();
    let mut sep = false;
    let parse_bool = |name: &str, v: &str| -> Result<bool, String> {
        match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(format!(
                "invalid argument {v:?} for \"--{name}\" flag: strconv.ParseBool: parsing {v:?}: invalid syntax"
            )),
        }
    };
    while let Some(a) = it.next() {
        if a == "--" {
            sep = true;
            pos.extend(it.by_ref().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, val) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            match name {
                "prefix" => w.prefix = val.map_or(Ok(true), |v| parse_bool(name, v))?,
                "prev-kv" => w.prev_kv = val.map_or(Ok(true), |v| parse_bool(name, v))?,
                "interactive" => {
                    val.map_or(Ok(true), |v| parse_bool(name, v))?;
                }
                "rev" => {
                    let v = match val {
                        Some(v) => v.to_string(),
                        None => it
                            .next()
                            .cloned()
                            .ok_or_else(|| "flag needs an argument: --rev".to_string())?,
                    };
                    w.rev = v.parse().map_err(|_| {
                        format!(
                            "invalid argument {v:?} for \"--rev\" flag: strconv.ParseInt: parsing {v:?}: invalid syntax"
                        )
                    })?;
                }
                _ => return Err(format!("unknown flag: --{name}")),
            }
        } else if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            for c in short.chars() {
                if c != 'i' {
                    return Err(format!("unknown shorthand flag: '{c}' in -{short}"));
                }
            }
        } else {
            pos.push(a.clone());
        }
    }
    Ok((pos, sep))
}

/// Interprets one line read from stdin (without its `\n`), as etcdctl 3.4 does.
pub fn parse_line(line: &str) -> LineAction {
    let args = match crate::txn::argify(line) {
        Ok(a) => a,
        Err(e) => return LineAction::Exit(EXIT_INVALID_INPUT, e),
    };
    let Some(first) = args.first() else {
        return LineAction::Skip(format!(
            "Invalid command: {line} (watch and progress supported)"
        ));
    };
    if first != "watch" {
        return LineAction::Skip(format!("Invalid command {line} (only support watch)"));
    }
    if args.len() < 2 {
        return LineAction::Skip(format!(
            "Invalid command {line} (command type or key is not provided)"
        ));
    }
    let mut w = WatchLine {
        key: String::new(),
        range_end: None,
        prefix: false,
        rev: 0,
        prev_kv: false,
    };
    if args.last().map(String::as_str) == Some("--") {
        return LineAction::Exit(
            EXIT_BAD_ARGS,
            "bad number of arguments (found separator --, but no commands)".into(),
        );
    }
    let (pos, sep) = match parse_flags(&args[1..], &mut w) {
        Ok(x) => x,
        Err(e) => return LineAction::Exit(EXIT_BAD_ARGS, e),
    };
    if sep {
        return LineAction::Exit(
            EXIT_BAD_FEATURE,
            "running a command on watch events is not supported".into(),
        );
    }
    if pos.is_empty() {
        return LineAction::Exit(EXIT_BAD_ARGS, "bad number of arguments".into());
    }
    w.key = pos[0].clone();
    // etcdctl takes a range end only when exactly two arguments are given.
    if pos.len() == 2 {
        if w.prefix {
            return LineAction::Skip(format!(
                "Invalid command {line} (`range_end` and `--prefix` are mutually exclusive)"
            ));
        }
        w.range_end = Some(pos[1].clone());
    }
    LineAction::Watch(w)
}

/// Reads stdin lines on a thread; `None` marks the end of input (or a read error).
fn stdin_lines() -> mpsc::UnboundedReceiver<Option<String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            let mut buf = Vec::new();
            match lock.read_until(b'\n', &mut buf) {
                // A last line without its newline is not a command (as etcdctl: EOF first).
                Ok(_) if buf.last() == Some(&b'\n') => {
                    buf.pop();
                    if tx
                        .send(Some(String::from_utf8_lossy(&buf).into_owned()))
                        .is_err()
                    {
                        return;
                    }
                }
                _ => {
                    let _ = tx.send(None);
                    return;
                }
            }
        }
    });
    rx
}

/// Runs the interactive watch until stdin ends (then exits the process).
pub async fn run(client: &Client, pr: &mut Printer) -> ! {
    let mut lines = stdin_lines();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Result<p::WatchResponse, String>>();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(Some(line)) = line else {
                    exit_error(EXIT_INVALID_INPUT, "Error reading watch request line: EOF")
                };
                match parse_line(&line) {
                    LineAction::Skip(msg) => eprintln!("{msg}"),
                    LineAction::Exit(code, msg) => exit_error(code, &msg),
                    LineAction::Watch(w) => start(client, w, ev_tx.clone()).await,
                }
            }
            Some(ev) = ev_rx.recv() => match ev {
                Ok(resp) => pr.watch(&resp),
                Err(e) => eprintln!("watch was canceled ({e})"),
            },
        }
    }
}

/// Starts one watch; its batches (or the error that ends it) go to `tx`.
async fn start(
    client: &Client,
    w: WatchLine,
    tx: mpsc::UnboundedSender<Result<p::WatchResponse, String>>,
) {
    let mut b = client.watch(w.key.clone());
    if let Some(end) = &w.range_end {
        b = b.range_end(end.clone());
    }
    if w.prefix {
        b = b.prefix();
    }
    if w.rev > 0 {
        b = b.rev(w.rev);
    }
    if w.prev_kv {
        b = b.prev_kv();
    }
    match b.await {
        Ok(mut watcher) => {
            tokio::spawn(async move {
                while let Some(r) = watcher.next().await {
                    let stop = r.is_err();
                    if tx.send(r.map_err(|e| e.to_string())).is_err() || stop {
                        return;
                    }
                }
            });
        }
        Err(e) => {
            let _ = tx.send(Err(e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(key: &str) -> WatchLine {
        WatchLine {
            key: key.into(),
            range_end: None,
            prefix: false,
            rev: 0,
            prev_kv: false,
        }
    }

    #[test]
    fn lines_parse_as_etcdctl_parses_them() {
        assert_eq!(parse_line("watch foo"), LineAction::Watch(watch("foo")));
        assert_eq!(
            parse_line("watch foo --prefix --rev 3"),
            LineAction::Watch(WatchLine {
                prefix: true,
                rev: 3,
                ..watch("foo")
            })
        );
        assert_eq!(
            parse_line("watch --rev=4 a b --prev-kv"),
            LineAction::Watch(WatchLine {
                range_end: Some("b".into()),
                rev: 4,
                prev_kv: true,
                ..watch("a")
            })
        );
        assert_eq!(
            parse_line("watch \"a b\" -i"),
            LineAction::Watch(watch("a b"))
        );
        // Three arguments: etcdctl ignores the range end.
        assert_eq!(parse_line("watch a b c"), LineAction::Watch(watch("a")));
    }

    #[test]
    fn bad_lines_are_skipped_or_fatal_as_in_etcdctl() {
        assert_eq!(
            parse_line(""),
            LineAction::Skip("Invalid command:  (watch and progress supported)".into())
        );
        assert_eq!(
            parse_line("watch"),
            LineAction::Skip("Invalid command watch (command type or key is not provided)".into())
        );
        assert_eq!(
            parse_line("get foo"),
            LineAction::Skip("Invalid command get foo (only support watch)".into())
        );
        assert_eq!(
            parse_line("watch a b --prefix"),
            LineAction::Skip(
                "Invalid command watch a b --prefix (`range_end` and `--prefix` are mutually exclusive)"
                    .into()
            )
        );
        assert_eq!(
            parse_line("watch a --nope"),
            LineAction::Exit(EXIT_BAD_ARGS, "unknown flag: --nope".into())
        );
        assert_eq!(
            parse_line("watch a -x"),
            LineAction::Exit(EXIT_BAD_ARGS, "unknown shorthand flag: 'x' in -x".into())
        );
        assert_eq!(
            parse_line("watch --prefix"),
            LineAction::Exit(EXIT_BAD_ARGS, "bad number of arguments".into())
        );
        assert_eq!(
            parse_line("watch a --rev"),
            LineAction::Exit(EXIT_BAD_ARGS, "flag needs an argument: --rev".into())
        );
        assert!(matches!(
            parse_line("watch a --rev x"),
            LineAction::Exit(EXIT_BAD_ARGS, _)
        ));
    }
}
