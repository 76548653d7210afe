//! Packed-document boundaries stored beside Q/K/V: an optional `doc_lens` (lengths) or
//! `cu_seqlens` (cumulative lengths, flash-attention's convention) tensor in the input
//! safetensors file, and plain text files of one length per line.

use std::os::unix::fs::FileExt;
use std::path::Path;

use safetensors::tensor::Dtype;

use crate::error::{Error, Result};
use crate::io::{bad_input, open_header};
use crate::mask::Documents;

/// Most documents a file may declare (a bound on what a hostile header makes us allocate).
const MAX_DOCS: usize = 1 << 26;

/// The documents of the safetensors file at `path`: from its 1-D integer tensor `doc_lens`
/// or `cu_seqlens` (I32, I64, U32 or U64), `None` when it has neither. Errors name the file
/// and the tensor: both present, wrong dtype or rank, negative or zero lengths.
pub fn read_documents(path: &Path) -> Result<Option<Documents>> {
    let bad = bad_input(path);
    let (file, _, meta, data_start) = open_header(path).map_err(&bad)?;
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

#[cfg(test)]
mod tests {
    use safetensors::tensor::TensorView;

    use super::*;

    /// A file with f32 `q` and the given integer tensors.
    fn file(extra: &[(&str, Dtype, Vec<u8>, usize)]) -> tempfile::NamedTempFile {
        let q: Vec<u8> = [0.5f32; 4].iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut views = vec![(
            "q".to_string(),
            TensorView::new(Dtype::F32, vec![1, 4, 1], &q).unwrap(),
        )];
        for (name, dtype, bytes, n) in extra {
            views.push((
                name.to_string(),
                TensorView::new(*dtype, vec![*n], bytes).unwrap(),
            ));
        }
        let bytes = safetensors::serialize(views, &None).unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    fn i64s(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn doc_lens_and_cu_seqlens_are_read_and_bad_ones_named() {
        let f = file(&[("doc_lens", Dtype::I64, i64s(&[1, 3]), 2)]);
        let docs = read_documents(f.path()).unwrap().unwrap();
        assert_eq!(docs.lengths(), vec![1, 3]);
        let cu: Vec<u8> = [0u32, 3, 4].iter().flat_map(|x| x.to_le_bytes()).collect();
        let f = file(&[("cu_seqlens", Dtype::U32, cu, 3)]);
        assert_eq!(
            read_documents(f.path()).unwrap().unwrap().lengths(),
            vec![3, 1]
        );
        assert_eq!(read_documents(file(&[]).path()).unwrap(), None);
        for bad in [
            file(&[("doc_lens", Dtype::I64, i64s(&[2, -1]), 2)]),
            file(&[("doc_lens", Dtype::I64, i64s(&[2, 0]), 2)]),
            file(&[("doc_lens", Dtype::F32, i64s(&[2]), 2)]),
            file(&[
                ("doc_lens", Dtype::I64, i64s(&[4]), 1),
                ("cu_seqlens", Dtype::I64, i64s(&[0, 4]), 2),
            ]),
        ] {
            let e = read_documents(bad.path()).unwrap_err();
            assert!(e.is_user_error(), "{e}");
        }
    }

    #[test]
    fn lengths_files_skip_comments_and_name_bad_lines() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "# lengths\n3\n\n 5 \n").unwrap();
        assert_eq!(read_lengths_file(f.path()).unwrap(), vec![3, 5]);
        std::fs::write(f.path(), "3\nfive\n").unwrap();
        let e = read_lengths_file(f.path()).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
