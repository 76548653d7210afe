//! Tensor files: Q/K/V inputs from safetensors, and atomic safetensors outputs.
//!
//! Inputs: tensors `q` `[heads, seq, dim]`, `k` and `v` `[kv_heads, seq, dim]`, all f32. The file
//! is read with positioned reads, so each rank reads only the rows it owns. Outputs are written to a
//! temporary name beside the target and renamed, so a crash never leaves a half-written file.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

use safetensors::tensor::{Dtype, Metadata, TensorInfo, TensorView};

use crate::error::{Error, Result};
use crate::positions::Positions;
use crate::source::{RowSource, TensorKind};

/// Largest header we accept (the safetensors limit).
const MAX_HEADER: u64 = 100_000_000;

/// Where one tensor's f32 data lies in the file.
#[derive(Clone, Copy, Debug)]
struct Loc {
    offset: u64,
    heads: usize,
}

/// A Q/K/V safetensors file, validated; rows are read on demand with positioned reads, so a
/// rank reads only the rows it owns.
#[derive(Debug)]
pub struct FileSource {
    path: String,
    file: File,
    q: Loc,
    k: Loc,
    v: Loc,
    seq: usize,
    dim: usize,
}

impl FileSource {
    /// Opens and validates `path` as the safetensors format requires and as ringattn needs.
    ///
    /// The format: a regular file; an 8-byte header length within the file and below the
    /// format's limit; a UTF-8 JSON header the `safetensors` crate accepts; every tensor's
    /// `data_offsets` in order, contiguous from 0 (no gap, no overlap, no wrap-around), each
    /// span exactly `dtype size × ∏ shape` bytes, and the last one ending at the end of the
    /// file (no trailing data). ringattn: tensors `q`, `k`, `v` present, f32, rank 3 with no
    /// empty dimension, matching `seq` and `dim`, `k` and `v` of the same shape, `q` heads a
    /// multiple of `k` heads. Anything else is [`Error::BadInput`].
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let bad = bad_input(path);
        let (file, file_len, meta, data_start) = open_header(path).map_err(&bad)?;
        validate_offsets(&meta, file_len - data_start).map_err(&bad)?;
        let mut shapes = Vec::new();
        let mut locs = Vec::new();
        for t in [TensorKind::Q, TensorKind::K, TensorKind::V] {
            let info = meta
                .info(t.name())
                .ok_or_else(|| bad(format!("missing tensor `{}` (expected q, k, v)", t.name())))?;
            check_qkv_entry(t.name(), info).map_err(&bad)?;
            locs.push(Loc {
                offset: data_start + info.data_offsets.0 as u64,
                heads: info.shape[0],
            });
            shapes.push(info.shape.clone());
        }
        let (qs, ks, vs) = (&shapes[0], &shapes[1], &shapes[2]);
        if ks != vs {
            return Err(bad(format!("k has shape {ks:?} but v has {vs:?}")));
        }
        if qs[1] != ks[1] || qs[2] != ks[2] {
            return Err(bad(format!(
                "q has shape {qs:?} but k has {ks:?}: seq and dim must match"
            )));
        }
        if qs[0] % ks[0] != 0 {
            return Err(bad(format!(
                "q has {} heads, not a multiple of k's {} heads",
                qs[0], ks[0]
            )));
        }
        Ok(FileSource {
            path: name,
            file,
            q: locs[0],
            k: locs[1],
            v: locs[2],
            seq: qs[1],
            dim: qs[2],
        })
    }

    /// Number of query heads.
    pub fn heads(&self) -> usize {
        self.q.heads
    }

    /// Number of KV heads.
    pub fn kv_heads(&self) -> usize {
        self.k.heads
    }

    /// Sequence length.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Head dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn loc(&self, tensor: TensorKind) -> Loc {
        match tensor {
            TensorKind::Q => self.q,
            TensorKind::K => self.k,
            TensorKind::V => self.v,
        }
    }

    fn read_row(&self, tensor: TensorKind, head: usize, pos: usize, out: &mut [f32]) -> Result<()> {
        if head >= self.loc(tensor).heads || pos >= self.seq {
            return Err(Error::config(format!(
                "row {pos} of head {head} of `{}` requested from {}, which has {} heads, {} \
                 positions and {} elements per row",
                tensor.name(),
                self.path,
                self.loc(tensor).heads,
                self.seq,
                self.dim
            )));
        }
        let start = self.loc(tensor).offset + (((head * self.seq + pos) * self.dim) * 4) as u64;
        let mut bytes = vec![0u8; self.dim * 4];
        self.file
            .read_exact_at(&mut bytes, start)
            .map_err(|e| Error::Io {
                context: format!(
                    "reading {} row {pos} of head {head} from {}",
                    tensor.name(),
                    self.path
                ),
                source: e,
            })?;
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// Checks that every row at `positions` of every tensor is finite; the error names the
    /// tensor, head, position and element of the first NaN/Inf.
    pub fn check_finite(&self, positions: &Positions) -> Result<()> {
        let mut row = vec![0.0f32; self.dim];
        for t in [TensorKind::Q, TensorKind::K, TensorKind::V] {
            for head in 0..self.loc(t).heads {
                for pos in positions.iter() {
                    self.read_row(t, head, pos, &mut row)?;
                    if let Some((i, x)) = row.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                        return Err(Error::BadInput {
                            path: self.path.clone(),
                            reason: format!(
                                "tensor `{}` holds {x} at head {head}, position {pos}, element {i}",
                                t.name()
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl RowSource for FileSource {
    fn fill_row(&self, tensor: TensorKind, head: usize, pos: usize, out: &mut [f32]) -> Result<()> {
        self.read_row(tensor, head, pos, out)
    }
}

/// Opens `path` for reading if it is a regular file (a FIFO would block the open, a
/// directory reads as an I/O error later): returns the file and its length.
pub(crate) fn open_regular(path: &Path) -> std::result::Result<(File, u64), String> {
    let kind = |m: &std::fs::Metadata| {
        let t = m.file_type();
        if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        }
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot open: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "cannot read it: it is {}, not a regular file",
            kind(&meta)
        ));
    }
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // The path may have been replaced between the two looks: check what was opened.
    let meta = file.metadata().map_err(|e| format!("cannot open: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "cannot read it: it is {}, not a regular file",
            kind(&meta)
        ));
    }
    Ok((file, meta.len()))
}

/// The [`Error::BadInput`] of the file at `path` for a reason.
pub(crate) fn bad_input(path: &Path) -> impl Fn(String) -> Error {
    let name = path.display().to_string();
    move |reason| Error::BadInput {
        path: name.clone(),
        reason,
    }
}

/// [`open_regular`] then [`read_header`]: the file, its length, its header and where the
/// data starts.
pub(crate) fn open_header(path: &Path) -> std::result::Result<(File, u64, Metadata, u64), String> {
    let (file, file_len) = open_regular(path)?;
    let (meta, data_start) = read_header(&file, file_len)?;
    Ok((file, file_len, meta, data_start))
}

/// Reads the header length and the JSON header, parsed as the `safetensors` crate parses it
/// (rejecting what it rejects). Returns the header and where the data starts.
pub(crate) fn read_header(
    file: &File,
    file_len: u64,
) -> std::result::Result<(Metadata, u64), String> {
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at)
            .map_err(|e| format!("cannot read it: {e}"))
    };
    if file_len < 8 {
        return Err("not a valid safetensors file (shorter than its 8-byte header length)".into());
    }
    let mut len_bytes = [0u8; 8];
    read(&mut len_bytes, 0)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || header_len > file_len - 8 {
        return Err(format!(
            "not a valid safetensors file (header length {header_len}, file length {file_len})"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    read(&mut header, 8)?;
    let text = std::str::from_utf8(&header)
        .map_err(|e| format!("not a valid safetensors file (header is not UTF-8: {e})"))?;
    let meta: Metadata = serde_json::from_str(text).map_err(|e| {
        // Name the tensor whose entry is malformed when one of ours is.
        let entries: HashMap<String, serde_json::Value> =
            serde_json::from_str(text).unwrap_or_default();
        for t in [TensorKind::Q, TensorKind::K, TensorKind::V] {
            if let Some(entry) = entries.get(t.name()) {
                if let Err(e) = serde_json::from_value::<TensorInfo>(entry.clone()) {
                    return format!("tensor `{}` has a malformed header entry ({e})", t.name());
                }
            }
        }
        format!("not a valid safetensors file (header: {e})")
    })?;
    Ok((meta, 8 + header_len))
}

/// The format's layout rule: sorted by offsets, the tensors' data spans tile `[0, data_len)`
/// exactly — each begins where the previous ended (no gap, overlap or wrap-around), is as long
/// as its dtype and shape say, and the last ends at the end of the file.
fn validate_offsets(meta: &Metadata, data_len: u64) -> std::result::Result<(), String> {
    let mut tensors: Vec<(String, &TensorInfo)> = meta.tensors().into_iter().collect();
    tensors.sort_by(|a, b| (a.1.data_offsets, &a.0).cmp(&(b.1.data_offsets, &b.0)));
    if let Some((name, info)) = tensors
        .iter()
        .find(|(_, i)| i.data_offsets.1 < i.data_offsets.0)
    {
        let (begin, end) = info.data_offsets;
        return Err(format!(
            "tensor `{name}` data_offsets [{begin}, {end}) end before they begin"
        ));
    }
    let mut end_prev = 0usize;
    for (name, info) in &tensors {
        let (begin, end) = info.data_offsets;
        if begin != end_prev {
            let what = if begin < end_prev {
                "overlaps"
            } else {
                "leaves a gap after"
            };
            return Err(format!(
                "tensor `{name}` data [{begin}, {end}) {what} the previous tensor's data \
                 (ending at {end_prev}): offsets must be contiguous"
            ));
        }
        let bytes = info
            .shape
            .iter()
            .try_fold(info.dtype.size(), |a, &s| a.checked_mul(s));
        if bytes != Some(end - begin) {
            return Err(format!(
                "tensor `{name}` data [{begin}, {end}) does not match shape {:?} of {:?}",
                info.shape, info.dtype
            ));
        }
        end_prev = end;
    }
    match (end_prev as u64).cmp(&data_len) {
        std::cmp::Ordering::Greater => Err(format!(
            "tensor data ends at byte {end_prev}, past the end of the file ({data_len} data bytes)"
        )),
        std::cmp::Ordering::Less => Err(format!(
            "{} trailing bytes after the last tensor's data",
            data_len - end_prev as u64
        )),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// What ringattn needs of `q`, `k`, `v`: f32, `[heads, seq, dim]`, no empty dimension.
fn check_qkv_entry(name: &str, info: &TensorInfo) -> std::result::Result<(), String> {
    if info.dtype != Dtype::F32 {
        return Err(format!(
            "tensor `{name}` has dtype {:?}, expected F32",
            info.dtype
        ));
    }
    let shape = &info.shape;
    if shape.len() != 3 {
        return Err(format!(
            "tensor `{name}` has shape {shape:?}, expected [heads, seq, dim]"
        ));
    }
    if shape.contains(&0) {
        return Err(format!("tensor `{name}` has an empty dimension {shape:?}"));
    }
    Ok(())
}

/// One f32 tensor to write: name, shape, row-major data.
pub struct NamedTensor<'a> {
    /// Tensor name in the file.
    pub name: &'a str,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values (`shape.iter().product()` of them).
    pub data: &'a [f32],
}

/// Writes f32 tensors to a safetensors file atomically (temporary file + rename).
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor<'_>]) -> Result<()> {
    let name = path.display().to_string();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b).map_err(|e| {
            Error::config(format!("tensor `{}` does not match its shape: {e}", t.name))
        })?;
        views.push((t.name, view));
    }
    let tmp = temp_path(path);
    let result = safetensors::serialize_to_file(views, &None, &tmp)
        .map_err(|e| Error::Io {
            context: format!("writing {name}"),
            source: match e {
                safetensors::SafeTensorError::IoError(io) => io,
                other => std::io::Error::other(format!("{other:?}")),
            },
        })
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| Error::Io {
                context: format!("renaming to {name}"),
                source: e,
            })
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub use crate::temp_files::{remove_stale_temps, temp_path};

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, q: (&[usize], &[f32]), kv: (&[usize], &[f32])) {
        write_safetensors(
            path,
            &[
                NamedTensor {
                    name: "q",
                    shape: q.0.to_vec(),
                    data: q.1,
                },
                NamedTensor {
                    name: "k",
                    shape: kv.0.to_vec(),
                    data: kv.1,
                },
                NamedTensor {
                    name: "v",
                    shape: kv.0.to_vec(),
                    data: kv.1,
                },
            ],
        )
        .unwrap();
    }

    #[test]
    fn reads_rows_back_and_reports_non_finite_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qkv.safetensors");
        let q: Vec<f32> = (0..2 * 3 * 4).map(|x| x as f32).collect();
        let mut kv: Vec<f32> = (0..3 * 4).map(|x| -(x as f32)).collect();
        write(&path, (&[2, 3, 4], &q), (&[1, 3, 4], &kv));
        let src = FileSource::open(&path).unwrap();
        assert_eq!(
            (src.heads(), src.kv_heads(), src.seq(), src.dim()),
            (2, 1, 3, 4)
        );
        let mut row = [0.0; 4];
        src.fill_row(TensorKind::Q, 1, 2, &mut row).unwrap();
        assert_eq!(row, [20.0, 21.0, 22.0, 23.0]);
        src.check_finite(&Positions::contiguous(0, 3)).unwrap();
        kv[2 * 4 + 1] = f32::NAN;
        write(&path, (&[2, 3, 4], &q), (&[1, 3, 4], &kv));
        let err = FileSource::open(&path)
            .unwrap()
            .check_finite(&Positions::contiguous(0, 3))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("tensor `k` holds NaN at head 0, position 2, element 1"),
            "{err}"
        );
        assert!(FileSource::open(&path)
            .unwrap()
            .check_finite(&Positions::contiguous(0, 2))
            .is_ok());
    }

    #[test]
    fn rejects_bad_shapes_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        write(&path, (&[3, 3, 4], &[0.0; 36]), (&[2, 3, 4], &[0.0; 24]));
        assert!(FileSource::open(&path)
            .unwrap_err()
            .to_string()
            .contains("not a multiple"));
        write(&path, (&[2, 3, 4], &[0.0; 24]), (&[2, 2, 4], &[0.0; 16]));
        assert!(FileSource::open(&path)
            .unwrap_err()
            .to_string()
            .contains("seq and dim"));
        std::fs::write(&path, b"definitely not safetensors").unwrap();
        let err = FileSource::open(&path).unwrap_err();
        assert!(
            err.is_user_error() && err.to_string().contains("not a valid safetensors"),
            "{err}"
        );
    }
}
