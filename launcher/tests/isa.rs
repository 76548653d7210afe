//! `--isa` and `RINGATTN_ISA` from the command line: every path this CPU has runs and passes
//! the check; one it lacks (or an unknown name in the environment) is exit 2.

use std::process::Command;

fn ringattn(args: &[&str], env: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    cmd.args(args).env_remove("RINGATTN_ISA");
    if let Some(value) = env {
        cmd.env("RINGATTN_ISA", value);
    }
    let out = cmd.output().expect("run ringattn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn available() -> Vec<String> {
    let (code, stdout, stderr) = ringattn(&["info", "--json", "-"], None);
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let peaks = &v["peak_gflops_per_core_by_isa"];
    for isa in ["avx512", "avx2"] {
        let listed = v["isa_available"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == isa);
        assert_eq!(
            peaks[isa].as_f64().is_some_and(|g| g > 0.0),
            listed,
            "{stdout}"
        );
    }
    v["isa_available"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_isa_runs_and_passes_the_check_or_is_refused_with_exit_2() {
    let have = available();
    let run = [
        "run",
        "--workers",
        "1",
        "--threads",
        "1",
        "--seq",
        "300",
        "--heads",
        "2",
        "--head-dim",
        "32",
        "--causal",
        "--check",
        "--json",
        "-",
        "--isa",
    ];
    for isa in ["amx", "avx512", "avx2", "portable"] {
        let (code, stdout, stderr) = ringattn(&[&run[..], &[isa]].concat(), None);
        let (info_code, info, _) = ringattn(&["info", "--json", "-", "--isa", isa], None);
        if have.iter().any(|h| h == isa) {
            assert_eq!(code, Some(0), "{isa}: {stderr}");
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["check"]["passed"], true, "{isa}: {stdout}");
            assert_eq!(info_code, Some(0));
            let v: serde_json::Value = serde_json::from_str(&info).unwrap();
            assert_eq!(v["isa"], isa);
        } else {
            assert_eq!(code, Some(2), "{isa}: {stderr}");
            assert!(
                stderr.contains("does not support") && stderr.contains(isa),
                "{stderr}"
            );
            assert_eq!(info_code, Some(2), "{isa}");
        }
    }
}

#[test]
fn the_environment_variable_chooses_and_is_checked() {
    let (code, stdout, _) = ringattn(&["info", "--json", "-"], Some("portable"));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["isa"], "portable");
    let (code, _, stderr) = ringattn(&["info"], Some("mmx"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("RINGATTN_ISA"), "{stderr}");
    // An explicit flag wins over the environment.
    let (code, stdout, _) = ringattn(&["info", "--json", "-", "--isa", "portable"], Some("mmx"));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("\"portable\""));
}
