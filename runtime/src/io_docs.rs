//! Packed-document boundaries stored beside Q/K/V: an optional `doc_lens` (lengths) or
//! `cu_seqlens` (cumulative lengths, flash-attention's convention) tensor in the input
//! safetensors file, and plain text files of one length per line.

use std::os::unix::fs::FileExt;
use std::path::Path;

use safetensors::tensor::Dtype;

use crate::error::{Error, Result};
use crate::io::{open_regular, read_header};
use crate::mask::Documents;

/// Most documents a file may declare (a bound on what a hostile header makes us allocate).
const MAX_DOCS: usize = 1 << 26;

/// The documents of the safetensors file at `path`: from its 1-D integer tensor `doc_lens`
/// or `cu_seqlens` (I32, I64, U32 or U64), `None` when it has neither. Errors name the file
/// and the tensor: both present, wrong dtype or rank, negative or zero lengths.
pub fn read_documents(path: &Path) -> Result<Option<Documents>> {
    let name = path.display().to_string();
    let bad = |reason: String| Error::BadInput {
        path: name.clone(),
        reason,
    };
    let (file, file_len) = open_regular(path).map_err(&bad)?;
    let (meta, data_start) = read_header(&file, file_len).map_err(&bad)?;
    let (tensor, info) = match (meta.info("doc_lens"), meta.info("cu_seqlens")) {
        (Some(_), Some(_)) => {
            return Err(bad("has both `doc_lens` and `cu_seqlens`: keep one".into()))
        }
        (Some(i), None) => ("doc_lens", i),
        (None, Some(i)) => ("cu_seqlens", i),
        (None, None) => return Ok(None),
    };
    let width = match info.dtype {
        Dtype::I32 | Dtype::U32 => 4,
        Dtype::I64 | Dtype::U64 => 8,
        d => {
            return Err(bad(format!(
                "tensor `{tensor}` has dtype {d:?}, expected an integer type"
            )))
        }
    };
    if info.shape.len() != 1 || info.shape[0] > MAX_DOCS {
        return Err(bad(format!(
            "tensor `{tensor}` has shape {:?}, expected one dimension of at most {MAX_DOCS}",
            info.shape
        )));
    }
    let mut raw = vec![0u8; info.shape[0] * width];
    let at = data_start + info.data_offsets.0 as u64;
    file.read_exact_at(&mut raw, at)
        .map_err(|e| bad(format!("cannot read tensor `{tensor}`: {e}")))?;
    let values = raw
        .chunks_exact(width)
        .enumerate()
        .map(|(i, c)| {
            let v: i128 = match info.dtype {
                Dtype::I32 => i32::from_le_bytes(c.try_into().expect("4 bytes")).into(),
                Dtype::U32 => u32::from_le_bytes(c.try_into().expect("4 bytes")).into(),
                Dtype::I64 => i64::from_le_bytes(c.try_into().expect("8 bytes")).into(),
                _ => u64::from_le_bytes(c.try_into().expect("8 bytes")).into(),
            };
            usize::try_from(v).map_err(|_| bad(format!("tensor `{tensor}` entry {i} is {v}")))
        })
        .collect::<Result<Vec<usize>>>()?;
    let docs = if tensor == "doc_lens" {
        Documents::from_lengths(&values)
    } else {
        Documents::from_cu_seqlens(&values)
    };
    docs.map(Some)
        .map_err(|e| bad(format!("tensor `{tensor}`: {e}")))
}

/// Document lengths from a text file: one length per line (blank lines and lines starting with
/// `#` ignored). Errors name the file and the line.
pub fn read_lengths_file(path: &Path) -> Result<Vec<usize>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::BadInput {
        path: name.clone(),
        reason: format!("cannot read it: {e}"),
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            l.trim().parse::<usize>().map_err(|_| Error::BadInput {
                path: name.clone(),
                reason: format!("line {}: `{}` is not a document length", i + 1, l.trim()),
            })
        })
        .collect()
}
