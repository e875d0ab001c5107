//! Shell completions and man pages, checked with the tools that consume them: the real bash completes
//! subcommands and flags from the sourced script, and groff renders the pages without a warning.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cacerts-sync");

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The words bash offers for `line` (the last word being completed), with the script sourced as a user would.
fn bash_complete(line: &str) -> Vec<String> {
    let script = format!(
        r#"source <("$BIN" completions bash) || exit 9
        fn=$(complete -p cacerts-sync | sed -E 's/.* -F ([^ ]+) .*/\1/')
        COMP_LINE={line:?}; COMP_POINT=${{#COMP_LINE}}
        read -ra COMP_WORDS <<< "$COMP_LINE"
        case "$COMP_LINE" in *" ") COMP_WORDS+=("");; esac
        COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
        "$fn" cacerts-sync "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let (ok, stdout, stderr) = run(Command::new("bash").arg("-c").arg(script).env("BIN", BIN));
    assert!(ok, "bash completion failed: {stderr}");
    stdout.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn bash_completes_subcommands_from_the_sourced_script() {
    assert_eq!(bash_complete("cacerts-sync check"), ["check-root"]);
    let all = bash_complete("cacerts-sync ");
    for sub in ["sync", "watch", "check-root", "inspect", "completions", "man"] {
        assert!(all.iter().any(|w| w == sub), "{sub} not offered: {all:?}");
    }
}

#[test]
fn bash_completes_a_subcommands_flags_and_enum_values() {
    assert_eq!(bash_complete("cacerts-sync sync --vault"), ["--vault-url"]);
    assert!(bash_complete("cacerts-sync watch --lea").contains(&"--leader-election".to_string()));
    // Flags of another subcommand are not offered.
    assert!(bash_complete("cacerts-sync inspect --lea").is_empty());
    let auth = bash_complete("cacerts-sync sync --auth ");
    assert!(auth.contains(&"workload-identity".to_string()) && auth.contains(&"azure-cli".to_string()), "{auth:?}");
}

#[test]
fn zsh_and_fish_scripts_name_the_binary_and_every_subcommand() {
    let (ok, zsh, _) = run(Command::new(BIN).args(["completions", "zsh"]));
    assert!(ok && zsh.starts_with("#compdef cacerts-sync"), "{}", &zsh[..80.min(zsh.len())]);
    let (ok, fish, _) = run(Command::new(BIN).args(["completions", "fish"]));
    assert!(ok && fish.contains("complete -c cacerts-sync"));
    for sub in ["check-root", "inspect", "watch"] {
        assert!(zsh.contains(&format!("'{sub}:")), "zsh lacks {sub}");
        assert!(fish.contains(&format!("-a \"{sub}\"")), "fish lacks {sub}");
    }
    let (ok, _, stderr) = run(Command::new(BIN).args(["completions", "tcsh"]));
    assert!(!ok && stderr.contains("invalid value 'tcsh'"), "{stderr}");
}

/// groff's rendering of a page, failing on any warning (`-ww`).
fn groff(page: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-rLL=120n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff (Debian groff-base) renders the man pages");
    child.stdin.take().unwrap().write_all(page).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "groff: {stderr}");
    // Drop grotty's overstrike formatting ("X\bX" bold, "_\bX" underline) and the justification's extra spaces.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_man_page_renders_cleanly_and_lists_every_subcommand() {
    let (ok, roff, stderr) = run(Command::new(BIN).arg("man"));
    assert!(ok, "{stderr}");
    let text = groff(roff.as_bytes());
    assert!(text.contains("cacerts-sync - Keeps an Istio mesh"), "{text}");
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    for sub in ["cacerts-sync-sync(1)", "cacerts-sync-check-root(1)", "cacerts-sync-inspect(1)"] {
        assert!(text.contains(sub), "{sub} missing:\n{text}");
    }
    assert!(!text.contains("cacerts-sync-help(1)"), "no page exists for help:\n{text}");
}

#[test]
fn a_subcommand_page_documents_its_flags_and_defaults() {
    let (ok, roff, _) = run(Command::new(BIN).args(["man", "watch"]));
    assert!(ok);
    let text = groff(roff.as_bytes());
    assert!(text.contains("--interval <INTERVAL> [default: 2m]"), "{text}");
    assert!(text.contains("--kubeconfig <PATH>"), "global flags are on every page:\n{text}");
    let (ok, _, stderr) = run(Command::new(BIN).args(["man", "nope"]));
    assert!(!ok && stderr.contains("unknown subcommand \"nope\""), "{stderr}");
}

#[test]
fn out_dir_writes_one_page_per_command_for_packagers() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run(Command::new(BIN).args(["man", "--out-dir"]).arg(dir.path()));
    assert!(ok, "{stderr}");
    for page in ["cacerts-sync.1", "cacerts-sync-sync.1", "cacerts-sync-watch.1", "cacerts-sync-check-root.1"] {
        let path = dir.path().join(page);
        assert!(Path::new(&path).exists(), "{page} not written");
        groff(&std::fs::read(path).unwrap());
    }
}
