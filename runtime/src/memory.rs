//! What a job needs in memory and what the machine has, checked before anything is allocated.
//!
//! A request larger than the machine must be refused up front with a line that says how much
//! it needs and has, never end in an allocation abort (SIGABRT) half-way through. The
//! estimators use u128 arithmetic, so absurd sizes (`usize::MAX` tokens, heads, tiles, steps)
//! are an [`Error::InvalidConfig`] naming the field, never an overflow panic or a wrap-around
//! that looks small. [`available`] is the smaller of `/proc/meminfo`'s MemAvailable and the
//! room left under the process's cgroup (v2 or v1) memory limit.
//!
//! The estimates are upper bounds of the large buffers (they ignore what is O(1) per rank).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes the machine can give this process, and where the figure comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    /// Bytes available.
    pub bytes: u64,
    /// What limits them (e.g. "MemAvailable in /proc/meminfo", "cgroup limit 8.0 GiB").
    pub limit: String,
}

/// The memory this process can use now: the smaller of MemAvailable and the room under the
/// cgroup limit; `None` when neither can be read (non-Linux, no /proc): nothing is refused.
pub fn available() -> Option<Available> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo_available(&t))
        .map(|bytes| Available {
            bytes,
            limit: "MemAvailable in /proc/meminfo".into(),
        });
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| cgroup_room(&t, Path::new("/sys/fs/cgroup")));
    match (meminfo, cgroup) {
        (Some(m), Some(c)) => Some(if c.bytes < m.bytes { c } else { m }),
        (m, c) => m.or(c),
    }
}

/// Refuses a job that needs `need` bytes when the machine has less ([`Error::OutOfMemory`],
/// which is bad input: exit code 2). `what` names what needs it in the message. Passes when
/// the available memory cannot be determined.
pub fn check_fits(need: u64, what: &str) -> Result<()> {
    match available() {
        Some(a) => check_fits_in(need, what, &a),
        None => Ok(()),
    }
}

/// [`check_fits`] against a given [`Available`] (for tests and for callers that measured it).
pub fn check_fits_in(need: u64, what: &str, available: &Available) -> Result<()> {
    if need > available.bytes {
        return Err(Error::OutOfMemory {
            what: what.to_string(),
            need,
            available: available.bytes,
            limit: available.limit.clone(),
        });
    }
    Ok(())
}

/// `MemAvailable` of `/proc/meminfo` text, in bytes.
pub fn parse_meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    let unit = match fields.next() {
        Some("kB") | Some("KB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// Room left under the tightest memory limit of the cgroup in `/proc/self/cgroup` text (v2
/// `0::/path`, else v1 `N:…memory…:/path`), walking from the process's cgroup up to `root`
/// (limits of ancestors apply too). `None` when no level sets a limit.
pub fn cgroup_room(proc_cgroup: &str, root: &Path) -> Option<Available> {
    let mut best: Option<Available> = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (dir, files) = if controllers.is_empty() {
            (root.to_path_buf(), ("memory.max", "memory.current"))
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                root.join("memory"),
                ("memory.limit_in_bytes", "memory.usage_in_bytes"),
            )
        } else {
            continue;
        };
        for level in levels(&dir, path) {
            let Some(room) = room_at(&level, files) else {
                continue;
            };
            if best.as_ref().is_none_or(|b| room.bytes < b.bytes) {
                best = Some(room);
            }
        }
    }
    best
}

/// `dir/path`, then each ancestor up to `dir` itself.
fn levels(dir: &Path, path: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut rel = PathBuf::from(path.trim().trim_start_matches('/'));
    loop {
        out.push(dir.join(&rel));
        if !rel.pop() {
            break;
        }
    }
    out.dedup();
    out
}

/// Limit minus usage at one cgroup directory; `None` without a numeric limit. v1 reports "no
/// limit" as a huge number, which simply never wins against MemAvailable.
fn room_at(level: &Path, (max_file, current_file): (&str, &str)) -> Option<Available> {
    let read = |f: &str| std::fs::read_to_string(level.join(f)).ok();
    let limit: u64 = read(max_file)?.trim().parse().ok()?;
    let used: u64 = read(current_file)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    Some(Available {
        bytes: limit.saturating_sub(used),
        limit: format!(
            "cgroup limit {} at {}, {} in use",
            human_bytes(limit),
            level.display(),
            human_bytes(used)
        ),
    })
}

/// `1536` → "1.5 KiB": bytes in binary units with one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The sizes of a prefill run that decide its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunShape {
    /// Sequence length N.
    pub seq: usize,
    /// Ranks in the ring P.
    pub world: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Bytes per K/V element (4 for f32, 2 for bf16).
    pub kv_elem_bytes: usize,
    /// Kernel query tile rows.
    pub tile_q: usize,
    /// Kernel key tile rows.
    pub tile_k: usize,
    /// Kernel threads per rank.
    pub threads: usize,
}

/// Bytes a job needs: on its largest rank, and in one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// The largest rank's buffers.
    pub per_rank: u64,
    /// One process: `per_rank × ranks_in_process` (every rank with the local backend, one
    /// under MPI).
    pub per_process: u64,
}

/// Product of sizes in u128; `None` past u128 (three sizes near 2^64 overflow even u128).
fn prod(factors: &[u128]) -> Option<u128> {
    factors.iter().try_fold(1u128, |a, &f| a.checked_mul(f))
}

/// Sum of byte counts; `None` past u128.
fn total(terms: &[Option<u128>]) -> Option<u128> {
    terms
        .iter()
        .try_fold(0u128, |a, t| t.and_then(|t| a.checked_add(t)))
}

/// Bytes as u64, or the error that says the request is beyond any machine.
fn to_u64(bytes: Option<u128>, what: &str) -> Result<u64> {
    bytes.and_then(|b| u64::try_from(b).ok()).ok_or_else(|| {
        Error::config(format!(
            "{what} would need more than 2^64 bytes of memory: the sizes are too large"
        ))
    })
}

/// Rows of the largest shard of `seq` tokens over `world` ranks, whatever the layout
/// (zigzag's two chunks of ⌈N/2P⌉ rows are at most ⌈N/P⌉ + 1).
fn max_rows(seq: u128, world: u128) -> u128 {
    seq.div_ceil(world) + 1
}

fn nonzero(fields: &[(&str, usize)]) -> Result<()> {
    match fields.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(Error::config(format!("`{name}` must be at least 1"))),
        None => Ok(()),
    }
}

/// Memory of a prefill ring pass: per rank the Q shard, the online-softmax state and the
/// finalised out/lse, three K/V blocks (own/current, incoming, an outgoing copy) plus the
/// kernel's packed f32 copy of the current one, the work-item list, and kernel scratch per
/// thread (score tile, packed K/V tile, accumulators). `ranks_in_process` is `world` with the
/// local backend, 1 under MPI.
pub fn run_bytes(shape: &RunShape, ranks_in_process: usize) -> Result<Need> {
    let s = shape;
    nonzero(&[
        ("seq", s.seq),
        ("world", s.world),
        ("heads", s.heads),
        ("kv_heads", s.kv_heads),
        ("head_dim", s.head_dim),
        ("kv_elem_bytes", s.kv_elem_bytes),
        ("tile_q", s.tile_q),
        ("tile_k", s.tile_k),
        ("threads", s.threads),
    ])?;
    let w = |x: usize| x as u128;
    let rows = max_rows(w(s.seq), w(s.world));
    let (h, hk, d) = (w(s.heads), w(s.kv_heads), w(s.head_dim));
    let need = total(&[
        // Q shard, state (acc + m + l), finalised out + lse.
        prod(&[h, rows, d, 4]),
        prod(&[h, rows, d + 2, 4]),
        prod(&[h, rows, d + 1, 4]),
        // K and V: three blocks in the element type plus the kernel's packed f32 copy.
        prod(&[2, hk, rows, d, 3 * w(s.kv_elem_bytes) + 4]),
        // Work items: one (head, query tile) each, ~64 bytes.
        prod(&[h, rows.div_ceil(w(s.tile_q)), 64]),
        scratch_per_thread(w(s.tile_q), w(s.tile_k), d).and_then(|t| t.checked_mul(w(s.threads))),
    ]);
    let per_rank = to_u64(need, "one rank of this run")?;
    let per_process = to_u64(
        need.and_then(|n| n.checked_mul(w(ranks_in_process.max(1)))),
        "this run's process",
    )?;
    Ok(Need {
        per_rank,
        per_process,
    })
}

/// One kernel thread's scratch: scores `tile_q × tile_k`, a packed K/V tile in f32 and in
/// three bf16 parts, accumulator rescale and position buffers.
fn scratch_per_thread(tq: u128, tk: u128, d: u128) -> Option<u128> {
    total(&[
        prod(&[tq, tk, 4]),
        prod(&[tk, d, 4 + 3 * 2]),
        prod(&[tq, d + 4, 4]),
        prod(&[tq + tk, 8]),
    ])
}

/// The sizes of a decode job (prefill, then `steps` new tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeShape {
    /// The prefill's shape (its `seq` is the prompt length).
    pub prefill: RunShape,
    /// Decode steps (new tokens).
    pub steps: usize,
}

/// Memory of prefill + decode: the prefill ring pass ([`run_bytes`]), then per rank the KV
/// cache of its prefill rows plus every new token it may own (contiguous: the last rank owns
/// them all), and the decoded rows (out + lse per head per step) on their owner.
pub fn decode_bytes(shape: &DecodeShape, ranks_in_process: usize) -> Result<Need> {
    let p = &shape.prefill;
    let prefill = run_bytes(p, ranks_in_process)?;
    let w = |x: usize| x as u128;
    let rows = max_rows(w(p.seq), w(p.world)) + w(shape.steps);
    let per_rank = total(&[
        Some(prefill.per_rank as u128),
        // The KV cache and the decoded rows (out + lse per head per step).
        prod(&[2, w(p.kv_heads), rows, w(p.head_dim), w(p.kv_elem_bytes)]),
        prod(&[w(shape.steps), w(p.heads), w(p.head_dim) + 1, 4]),
    ]);
    Ok(Need {
        per_rank: to_u64(per_rank, "one rank of this decode")?,
        per_process: to_u64(
            per_rank.and_then(|n| n.checked_mul(w(ranks_in_process.max(1)))),
            "this decode's process",
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> RunShape {
        RunShape {
            seq: 1 << 20,
            world: 4,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            kv_elem_bytes: 4,
            tile_q: 256,
            tile_k: 128,
            threads: 8,
        }
    }

    #[test]
    fn meminfo_and_cgroup_files_parse() {
        let text = "MemTotal:  16000 kB\nMemFree: 100 kB\nMemAvailable:    8000 kB\n";
        assert_eq!(parse_meminfo_available(text), Some(8000 * 1024));
        assert_eq!(parse_meminfo_available("MemTotal: 1 kB\n"), None);
        let dir = tempfile::tempdir().unwrap();
        let leaf = dir.path().join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(dir.path().join("a/memory.max"), "1000000\n").unwrap();
        std::fs::write(dir.path().join("a/memory.current"), "250000\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        let room = cgroup_room("0::/a/b\n", dir.path()).unwrap();
        assert_eq!(room.bytes, 750_000, "the parent's limit applies: {room:?}");
        assert!(cgroup_room("0::/a/b\n", &dir.path().join("none")).is_none());
        let v1 = dir.path().join("memory/job");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "4096").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "96").unwrap();
        let room = cgroup_room("3:cpu:/x\n5:memory:/job\n", dir.path()).unwrap();
        assert_eq!(room.bytes, 4000);
        // This machine: something is readable on Linux.
        if Path::new("/proc/meminfo").exists() {
            assert!(available().is_some_and(|a| a.bytes > 0));
        }
    }

    #[test]
    fn refusal_says_what_needs_how_much_and_what_there_is() {
        let a = Available {
            bytes: 1 << 30,
            limit: "MemAvailable in /proc/meminfo".into(),
        };
        check_fits_in(1 << 29, "rank 0", &a).unwrap();
        let err = check_fits_in(3 << 30, "rank 0 of the run", &a).unwrap_err();
        let msg = err.to_string();
        assert!(err.is_user_error(), "{msg}");
        assert!(
            msg.contains("rank 0 of the run needs 3.0 GiB")
                && msg.contains("only 1.0 GiB is available (MemAvailable"),
            "{msg}"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn estimates_cover_the_big_buffers_and_scale_with_ranks_in_process() {
        let s = shape();
        let need = run_bytes(&s, 1).unwrap();
        let rows = (1u64 << 20) / 4 + 1;
        let q = 32 * rows * 128 * 4;
        let kv = 2 * 8 * rows * 128 * 4;
        assert!(need.per_rank >= 3 * q + 3 * kv, "{need:?}");
        assert!(need.per_rank < 3 * q + 5 * kv + (64 << 20), "{need:?}");
        assert_eq!(run_bytes(&s, 4).unwrap().per_process, 4 * need.per_rank);
        let bf16 = run_bytes(
            &RunShape {
                kv_elem_bytes: 2,
                ..s
            },
            1,
        )
        .unwrap();
        assert!(bf16.per_rank < need.per_rank);
        let dec = decode_bytes(
            &DecodeShape {
                prefill: s,
                steps: 1000,
            },
            1,
        )
        .unwrap();
        assert!(dec.per_rank > need.per_rank + 2 * 8 * (rows + 1000) * 128 * 4 - 1);
    }

    #[test]
    fn absurd_sizes_are_typed_errors_not_overflow() {
        let m = usize::MAX;
        let cases = [
            RunShape { seq: m, ..shape() },
            RunShape {
                seq: m,
                world: m,
                ..shape()
            },
            RunShape {
                heads: m,
                ..shape()
            },
            RunShape {
                head_dim: m,
                ..shape()
            },
            RunShape {
                tile_q: m,
                tile_k: m,
                ..shape()
            },
            RunShape {
                threads: m,
                ..shape()
            },
        ];
        for s in cases {
            match run_bytes(&s, m) {
                Err(e) => assert!(e.is_user_error(), "{e}"),
                Ok(n) => {
                    // Fits in u64 (e.g. one token per rank): then it is a huge figure that
                    // check_fits refuses.
                    assert!(n.per_process > 1 << 40, "{s:?}: {n:?}");
                }
            }
        }
        let err = decode_bytes(
            &DecodeShape {
                prefill: shape(),
                steps: m,
            },
            1,
        );
        assert!(err.is_err_and(|e| e.is_user_error()));
        let zero = run_bytes(
            &RunShape {
                tile_k: 0,
                ..shape()
            },
            1,
        )
        .unwrap_err();
        assert!(zero.to_string().contains("`tile_k`"), "{zero}");
        // 10^10 tokens: refused against any real machine.
        let big = run_bytes(
            &RunShape {
                seq: 10_000_000_000,
                world: 1,
                ..shape()
            },
            1,
        )
        .unwrap();
        assert!(big.per_rank > 1 << 44);
    }
}
