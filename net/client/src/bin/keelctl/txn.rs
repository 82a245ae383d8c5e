//! etcdctl's `txn` input: compares (one per line, `target("key") op "value"`), an empty line,
//! success operations (`get`/`put`/`del` command lines), an empty line, failure operations, an
//! empty line.

use clap::Parser;
use keel_client::proto as p;

use crate::{del_request, get_request, put_request, DelArgs, GetArgs, PutArgs};

#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
enum OpLine {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

/// Splits a line like etcdctl's `argify`: "double quoted" (Go escapes), 'single quoted', bare.
pub fn argify(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut it = line.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let mut tok = String::new();
        if c == '"' {
            it.next();
            loop {
                match it.next() {
                    Some('"') => break,
                    Some('\\') => match it.next() {
                        Some('n') => tok.push('\n'),
                        Some('t') => tok.push('\t'),
                        Some('r') => tok.push('\r'),
                        Some('\\') => tok.push('\\'),
                        Some('"') => tok.push('"'),
                        Some(o) => {
                            tok.push('\\');
                            tok.push(o)
                        }
                        None => return Err(format!("unterminated string in {line:?}")),
                    },
                    Some(o) => tok.push(o),
                    None => return Err(format!("unterminated string in {line:?}")),
                }
            }
        } else if c == '\'' {
            it.next();
            loop {
                match it.next() {
                    Some('\'') => break,
                    Some(o) => tok.push(o),
                    None => return Err(format!("unterminated string in {line:?}")),
                }
            }
        } else {
            while let Some(&o) = it.peek() {
                if o.is_whitespace() {
                    break;
                }
                tok.push(o);
                it.next();
            }
        }
        out.push(tok);
    }
    Ok(out)
}

/// Parses one operation line.
pub fn parse_op(line: &str) -> Result<p::RequestOp, String> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(format!("invalid txn compare request: {line}"));
    }
    let op = OpLine::try_parse_from(args).map_err(|_| format!("invalid txn request: {line}"))?;
    match op {
        OpLine::Get(a) => get_request(&a).map(p::RequestOp::Range).map_err(|e| e.1),
        OpLine::Put(a) => put_request(&a, None).map(p::RequestOp::Put),
        OpLine::Del(a) => del_request(&a).map(p::RequestOp::DeleteRange),
    }
}

fn quoted(s: &str) -> Result<(String, &str), String> {
    let s = s.trim_start();
    let args = s.strip_prefix('"').ok_or("expected a quoted string")?;
    let mut out = String::new();
    let mut it = args.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Ok((out, &args[i + 1..])),
            '\\' => match it.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, o)) => out.push(o),
                None => break,
            },
            o => out.push(o),
        }
    }
    Err("unterminated quoted string".into())
}

/// Parses one comparison line: `target("key") op "value"`.
pub fn parse_compare(line: &str) -> Result<p::Compare, String> {
    let bad = || format!("malformed comparison: {line}");
    let (target, rest) = line.split_once('(').ok_or_else(bad)?;
    let (key, rest) = quoted(rest).map_err(|_| bad())?;
    let rest = rest.trim_start().strip_prefix(')').ok_or_else(bad)?;
    let rest = rest.trim_start();
    let op_end = rest.find(char::is_whitespace).ok_or_else(bad)?;
    let op = &rest[..op_end];
    let (val, _) = quoted(&rest[op_end..]).map_err(|_| bad())?;
    let result = match op {
        "=" | "==" => p::CompareResult::Equal,
        "!=" => p::CompareResult::NotEqual,
        "<" => p::CompareResult::Less,
        ">" => p::CompareResult::Greater,
        _ => return Err(format!("Unknown compare type {op}")),
    };
    let int = || {
        val.parse::<i64>()
            .map_err(|_| format!("invalid txn compare request: {line}"))
    };
    let (t, u) = match target.trim() {
        "ver" | "version" => (p::CompareTarget::Version, p::TargetUnion::Version(int()?)),
        "c" | "create" => (
            p::CompareTarget::Create,
            p::TargetUnion::CreateRevision(int()?),
        ),
        "m" | "mod" => (p::CompareTarget::Mod, p::TargetUnion::ModRevision(int()?)),
        "val" | "value" => (
            p::CompareTarget::Value,
            p::TargetUnion::Value(val.clone().into_bytes()),
        ),
        "lease" => (
            p::CompareTarget::Lease,
            p::TargetUnion::Lease(
                i64::from_str_radix(&val, 16)
                    .map_err(|_| format!("invalid txn compare request: {line}"))?,
            ),
        ),
        t => return Err(format!("malformed comparison: {line} (unknown target {t})")),
    };
    Ok(p::Compare {
        result,
        target: t,
        key: key.into_bytes(),
        target_union: u,
        range_end: Vec::new(),
    })
}

/// Reads a whole txn from `lines` (prompts on stdout when `interactive`).
pub fn read_txn(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    interactive: bool,
) -> Result<p::TxnRequest, String> {
    let mut section = |prompt: &str| -> Result<Vec<String>, String> {
        if interactive {
            println!("{prompt}");
        }
        let mut v = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(l)) => {
                    let l = l.trim().to_string();
                    if l.is_empty() {
                        return Ok(v);
                    }
                    v.push(l);
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("EOF".into()),
            }
        }
    };
    let cmps = section("compares:")?;
    let compare = cmps
        .iter()
        .map(|l| parse_compare(l))
        .collect::<Result<_, _>>()?;
    let succ = section("success requests (get, put, del):")?;
    let success = succ.iter().map(|l| parse_op(l)).collect::<Result<_, _>>()?;
    let fail = section("failure requests (get, put, del):")?;
    let failure = fail.iter().map(|l| parse_op(l)).collect::<Result<_, _>>()?;
    Ok(p::TxnRequest {
        compare,
        success,
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_parse() {
        let c = parse_compare(r#"mod("key1") > "0""#).unwrap();
        assert_eq!(c.key, b"key1");
        assert_eq!(c.result, p::CompareResult::Greater);
        assert_eq!(c.target_union, p::TargetUnion::ModRevision(0));
        let c = parse_compare(r#"value("k") = "a b""#).unwrap();
        assert_eq!(c.target_union, p::TargetUnion::Value(b"a b".to_vec()));
        assert!(parse_compare("nonsense").is_err());
    }

    #[test]
    fn ops_parse() {
        match parse_op(r#"put k "hello world" --prev-kv"#).unwrap() {
            p::RequestOp::Put(x) => {
                assert_eq!(x.value, b"hello world");
                assert!(x.prev_kv);
            }
            o => panic!("{o:?}"),
        }
        match parse_op("get k --prefix").unwrap() {
            p::RequestOp::Range(r) => assert_eq!(r.range_end, b"l"),
            o => panic!("{o:?}"),
        }
        assert!(parse_op("frob k").is_err());
    }
}
