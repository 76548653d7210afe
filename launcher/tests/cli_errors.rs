//! Integration tests of the `ringattn` binary's bad-input handling: every bad size, flag and
//! input file exits with code 2 and one `ringattn: error:` line naming the problem.

use safetensors::tensor::Dtype;

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// 1. Bad inputs: exit code 2, one line naming the problem.
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_sizes_are_rejected() {
    let small = [
        "--seq",
        "8",
        "--heads",
        "2",
        "--kv-heads",
        "2",
        "--head-dim",
        "4",
        "--workers",
        "2",
        "--threads",
        "1",
    ];
    for flag in [
        "--seq",
        "--heads",
        "--kv-heads",
        "--head-dim",
        "--workers",
        "--threads",
    ] {
        // The small defaults with `flag` set to 0.
        let mut args = vec!["run"];
        for pair in small.chunks(2) {
            args.push(pair[0]);
            args.push(if pair[0] == flag { "0" } else { pair[1] });
        }
        let run = assert_user_error(&args, &[flag]);
        assert!(
            run.stderr.contains("at least 1"),
            "{flag} 0: message should say it must be at least 1\n{}",
            run.describe()
        );
    }
}

#[test]
fn heads_not_a_multiple_of_kv_heads_is_rejected() {
    assert_user_error(
        &[
            "run",
            "--heads",
            "6",
            "--kv-heads",
            "4",
            "--seq",
            "8",
            "--head-dim",
            "4",
            "--workers",
            "1",
        ],
        &["--heads 6", "--kv-heads 4", "multiple"],
    );
}

#[test]
fn more_workers_than_tokens_is_rejected() {
    assert_user_error(
        &[
            "run",
            "--workers",
            "5",
            "--seq",
            "4",
            "--heads",
            "1",
            "--head-dim",
            "4",
        ],
        &["workers", "(5)", "(4)"],
    );
}

#[test]
fn unknown_layout_and_malformed_flags_are_one_line_usage_errors() {
    assert_user_error(
        &["run", "--layout", "diagonal", "--seq", "8"],
        &["diagonal", "--layout", "contiguous, striped, zigzag"],
    );
    assert_user_error(&["run", "--seq", "abc"], &["abc", "--seq"]);
    assert_user_error(&["run", "--bogus"], &["--bogus"]);
    assert_user_error(&["frobnicate"], &["frobnicate"]);
}

#[test]
fn bad_inject_fault_syntax_is_rejected() {
    assert_user_error(
        &[
            "run",
            "--workers",
            "2",
            "--seq",
            "8",
            "--heads",
            "1",
            "--head-dim",
            "4",
            "--inject-fault",
            "one",
        ],
        &["--inject-fault", "RANK:STEP", "`one`"],
    );
}

#[test]
fn input_q_and_k_seq_mismatch_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("seq_mismatch.safetensors");
    write_qkv(&f, &[2, 8, 4], &[2, 7, 4], &[2, 7, 4]);
    assert_user_error(
        &["run", "--input", p(&f), "--workers", "1"],
        &["seq_mismatch.safetensors", "seq and dim must match"],
    );
}

#[test]
fn input_k_and_v_shapes_differ_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kv_mismatch.safetensors");
    write_qkv(&f, &[2, 8, 4], &[2, 8, 4], &[1, 8, 4]);
    assert_user_error(
        &["run", "--input", p(&f), "--workers", "1"],
        &["kv_mismatch.safetensors", "[2, 8, 4]", "[1, 8, 4]"],
    );
}

#[test]
fn input_q_heads_not_a_multiple_of_k_heads_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gqa.safetensors");
    write_qkv(&f, &[3, 8, 4], &[2, 8, 4], &[2, 8, 4]);
    assert_user_error(
        &["run", "--input", p(&f), "--workers", "1"],
        &["gqa.safetensors", "not a multiple", "3", "2"],
    );
}

#[test]
fn input_non_f32_dtype_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f16.safetensors");
    let shape = vec![2, 8, 4];
    write_raw(
        &f,
        &[
            Raw {
                name: "q",
                dtype: Dtype::F16,
                shape: shape.clone(),
                bytes: vec![0u8; 2 * 8 * 4 * 2],
            },
            raw_f32("k", &shape, &rand_tensor(2, &shape)),
            raw_f32("v", &shape, &rand_tensor(3, &shape)),
        ],
    );
    assert_user_error(
        &["run", "--input", p(&f), "--workers", "1"],
        &["f16.safetensors", "tensor `q`", "F16", "F32"],
    );

    let g = dir.path().join("i32.safetensors");
    write_raw(
        &g,
        &[
            raw_f32("q", &shape, &rand_tensor(1, &shape)),
            raw_f32("k", &shape, &rand_tensor(2, &shape)),
            Raw {
                name: "v",
                dtype: Dtype::I32,
                shape: shape.clone(),
                bytes: vec![0u8; 2 * 8 * 4 * 4],
            },
        ],
    );
    assert_user_error(
        &["run", "--input", p(&g), "--workers", "1"],
        &["i32.safetensors", "tensor `v`", "I32", "F32"],
    );
}

#[test]
fn input_missing_tensor_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("no_v.safetensors");
    let shape = [2, 8, 4];
    write_raw(
        &f,
        &[
            raw_f32("q", &shape, &rand_tensor(1, &shape)),
            raw_f32("k", &shape, &rand_tensor(2, &shape)),
        ],
    );
    assert_user_error(
        &["run", "--input", p(&f), "--workers", "1"],
        &["no_v.safetensors", "missing tensor `v`"],
    );
}

#[test]
fn input_garbage_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("garbage.safetensors");
    std::fs::write(
        &f,
        b"this is definitely not a safetensors file, just text\n",
    )
    .unwrap();
    assert_user_error(
        &["run", "--input", p(&f), "--workers", "1"],
        &["garbage.safetensors", "not a valid safetensors"],
    );

    // Shorter than the 8-byte header length.
    let g = dir.path().join("tiny.safetensors");
    std::fs::write(&g, b"abc").unwrap();
    assert_user_error(
        &["run", "--input", p(&g), "--workers", "1"],
        &["tiny.safetensors", "not a valid safetensors"],
    );
}

#[test]
fn input_truncated_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("truncated.safetensors");
    write_qkv(&f, &[2, 8, 4], &[2, 8, 4], &[2, 8, 4]);
    let bytes = std::fs::read(&f).unwrap();
    // Cut into the data of the last tensor: the header is intact and claims more data.
    std::fs::write(&f, &bytes[..bytes.len() - 10]).unwrap();
    assert_user_error(
        &["run", "--input", p(&f), "--workers", "1"],
        &["truncated.safetensors", "past the end of the file"],
    );
}

#[test]
fn input_nonexistent_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("does_not_exist.safetensors");
    let run = ringattn(&["run", "--input", p(&f), "--workers", "1"]);
    // A wrong input path is bad input: exit code 2.
    assert_eq!(
        run.code,
        Some(2),
        "missing input must exit 2\n{}",
        run.describe()
    );
    assert_one_line_error(&run, &[p(&f)]);
}

#[test]
fn input_nan_in_k_names_tensor_head_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nan.safetensors");
    let (qs, ks) = ([4usize, 8, 4], [2usize, 8, 4]);
    let mut k = rand_tensor(2, &ks);
    // k[head 1][position 6][element 2]
    k[(8 + 6) * 4 + 2] = f32::NAN;
    write_raw(
        &f,
        &[
            raw_f32("q", &qs, &rand_tensor(1, &qs)),
            raw_f32("k", &ks, &k),
            raw_f32("v", &ks, &rand_tensor(3, &ks)),
        ],
    );
    for workers in ["1", "2"] {
        assert_user_error(
            &["run", "--input", p(&f), "--workers", workers, "--causal"],
            &[
                "nan.safetensors",
                "tensor `k`",
                "NaN",
                "head 1",
                "position 6",
            ],
        );
    }
}

#[test]
fn input_inf_in_q_names_tensor_head_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("inf.safetensors");
    let (qs, ks) = ([2usize, 8, 4], [1usize, 8, 4]);
    let mut q = rand_tensor(1, &qs);
    // q[head 1][position 5][element 0]
    q[(8 + 5) * 4] = f32::INFINITY;
    write_raw(
        &f,
        &[
            raw_f32("q", &qs, &q),
            raw_f32("k", &ks, &rand_tensor(2, &ks)),
            raw_f32("v", &ks, &rand_tensor(3, &ks)),
        ],
    );
    let run = assert_user_error(
        &["run", "--input", p(&f), "--workers", "3"],
        &["inf.safetensors", "tensor `q`", "head 1", "position 5"],
    );
    assert!(
        run.stderr.to_lowercase().contains("inf"),
        "message should say the value is infinite\n{}",
        run.describe()
    );
}

#[test]
fn seq_flag_mismatching_the_input_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ok.safetensors");
    write_qkv(&f, &[2, 8, 4], &[2, 8, 4], &[2, 8, 4]);
    assert_user_error(
        &["run", "--input", p(&f), "--seq", "9", "--workers", "1"],
        &["--seq 9", "8"],
    );
    // The matching value is accepted.
    assert_success(&ringattn(&[
        "run",
        "--input",
        p(&f),
        "--seq",
        "8",
        "--workers",
        "1",
    ]));
}
