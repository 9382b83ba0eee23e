//! The configurations shown to users work: every ```toml block of README.md and every file in
//! `examples/` passes `ringmaster check`.
//!
//! Certificate, key and CA files they name are generated here (rcgen) at the paths they give,
//! relative to a temporary copy of the config, so the check loads real PEM files.
//!
//! Fails when an example drifts from what the parser accepts (a renamed key, a removed mode), or
//! when the README loses its ```toml example altogether.

use std::path::Path;
use std::process::Command;

/// Every ```toml block of the README, in order.
fn toml_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The quoted value of `key = "..."` on a config line.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line
        .trim_start()
        .strip_prefix(key)?
        .trim_start()
        .strip_prefix('=')?;
    rest.trim_start().strip_prefix('"')?.split('"').next()
}

/// Writes `config` into `dir` and generates every certificate/key pair and CA file it names.
fn materialise(dir: &Path, name: &str, config: &str) -> std::path::PathBuf {
    let lines: Vec<&str> = config.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(cert) = value_of(line, "certificate") {
            let key = lines[i + 1..]
                .iter()
                .find_map(|l| value_of(l, "key"))
                .expect("a key after each certificate");
            let signer = rcgen::KeyPair::generate().expect("key");
            let params = rcgen::CertificateParams::new(vec!["mail.example.com".to_string()])
                .expect("params");
            let c = params.self_signed(&signer).expect("cert");
            write(&dir.join(cert), &c.pem());
            write(&dir.join(key), &signer.serialize_pem());
        }
        // A `ca` that names a certificate generated above pins it; keep that one.
        if let Some(ca) = value_of(line, "ca").filter(|ca| !dir.join(ca).exists()) {
            let signer = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            write(
                &dir.join(ca),
                &params.self_signed(&signer).expect("ca").pem(),
            );
        }
    }
    let path = dir.join(name);
    write(&path, config);
    path
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn check(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run ringmaster check")
}

#[test]
fn readme_config_example_passes_check() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let blocks = toml_blocks(&readme);
    assert!(!blocks.is_empty(), "README.md has no ```toml example");
    for (i, block) in blocks.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = materialise(dir.path(), &format!("readme-{i}.toml"), block);
        let out = check(&path);
        assert!(
            out.status.success(),
            "README toml block {i} fails `ringmaster check`:\n{block}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn example_files_pass_check() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(examples).expect("examples/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let dir = tempfile::tempdir().expect("tempdir");
            let text = std::fs::read_to_string(&path).expect("read example");
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let copy = materialise(dir.path(), &name, &text);
            let out = check(&copy);
            assert!(
                out.status.success(),
                "{} fails check: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "expected the passthrough, offload and reencrypt examples, found {checked}"
    );
}

/// The README opens with exactly two commands, the demo and the test command, and CI runs that
/// same test command (so what a newcomer runs is what CI checks).
///
/// Fails if the first ```sh block changes shape, or if `.ci/run` stops calling the README's test
/// command.
#[test]
fn readme_opens_with_the_demo_and_the_test_command_that_ci_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let block: Vec<&str> = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block")
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(block, ["cargo run --release -- demo", "bash tests/run.sh"]);
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == "bash tests/run.sh"),
        ".ci/run must run the README's test command:\n{ci}"
    );
}
