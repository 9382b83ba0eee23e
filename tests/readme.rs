//! The configuration shown in README.md is a working config: `ringmaster check` accepts it.
//!
//! Fails when the README's example drifts from what the parser accepts (a renamed key, a removed
//! mode), or when the README loses its ```toml example altogether.

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

#[test]
fn readme_config_example_passes_check() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let blocks = toml_blocks(&readme);
    assert!(!blocks.is_empty(), "README.md has no ```toml example");
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, block) in blocks.iter().enumerate() {
        let path = dir.path().join(format!("readme-{i}.toml"));
        std::fs::write(&path, block).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .expect("run ringmaster check");
        assert!(
            out.status.success(),
            "README toml block {i} fails `ringmaster check`:\n{}\n--- stderr ---\n{}",
            block,
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
            let out = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
                .args(["check", "-c"])
                .arg(&path)
                .output()
                .expect("run ringmaster check");
            assert!(
                out.status.success(),
                "{} fails check: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no example config found");
}
