//! kubectl plugin mode. Installed or linked as `kubectl-cacerts` on PATH, this binary answers
//! `kubectl cacerts inspect ...`: kubectl finds `kubectl-cacerts`, then execs it with argv[0] set to its path
//! and everything after `cacerts` as arguments (kubectl's own flags are not passed on, so the plugin takes
//! `--kubeconfig`, `--context` and `-n`/`--namespace` itself).
//!
//! `--kubeconfig` and `--context` are global flags of every command. `-n` belongs to the subcommands that
//! have a namespace; kubectl users also put it before the subcommand (`kubectl cacerts -n NS inspect`), so
//! in plugin mode it is moved behind the subcommand before clap parses.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The executable name kubectl looks up for `kubectl cacerts`.
pub const PLUGIN_BIN: &str = "kubectl-cacerts";
/// How usage and help name the command in plugin mode.
pub const PLUGIN_COMMAND: &str = "kubectl cacerts";

/// Whether the process was started as the kubectl plugin (argv[0] is `kubectl-cacerts`, `.exe` allowed).
pub fn invoked_as_plugin(argv0: &OsStr) -> bool {
    Path::new(argv0).file_stem().is_some_and(|stem| stem == PLUGIN_BIN)
}

/// Global flags that take a value in the next argument: skipped over when looking for the subcommand.
const VALUE_FLAGS: [&str; 3] = ["--log-format", "--kubeconfig", "--context"];

/// Moves `-n NS`, `-nNS`, `-n=NS`, `--namespace NS` and `--namespace=NS` given before the subcommand to just
/// after it, where the subcommand's own `--namespace` parses them. Everything else keeps its order.
pub fn kubectl_style_args(args: Vec<OsString>) -> Vec<OsString> {
    let mut iter = args.into_iter();
    let mut before = Vec::new();
    let mut namespace = Vec::new();
    let mut out = Vec::new();
    // argv[0]
    if let Some(first) = iter.next() {
        out.push(first);
    }
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "-n" || text == "--namespace" {
            namespace.push(arg);
            namespace.extend(iter.next());
        } else if text.starts_with("--namespace=") || (text.starts_with("-n") && !text.starts_with("--")) {
            namespace.push(arg);
        } else if VALUE_FLAGS.contains(&text.as_ref()) {
            before.push(arg);
            before.extend(iter.next());
        } else if text.starts_with('-') {
            before.push(arg);
        } else {
            // The subcommand: the namespace flags go right after it.
            out.append(&mut before);
            out.push(arg);
            out.append(&mut namespace);
            break;
        }
    }
    // No subcommand found: leave what was given for clap to report.
    out.append(&mut before);
    out.append(&mut namespace);
    out.extend(iter);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_plugin_is_recognised_by_its_executable_name_only() {
        assert!(invoked_as_plugin(OsStr::new("/home/me/.krew/bin/kubectl-cacerts")));
        assert!(invoked_as_plugin(OsStr::new("kubectl-cacerts.exe")));
        assert!(!invoked_as_plugin(OsStr::new("/usr/local/bin/cacerts-sync")));
        assert!(!invoked_as_plugin(OsStr::new("kubectl-cacerts-sync")));
    }

    #[test]
    fn a_namespace_before_the_subcommand_moves_behind_it_in_every_spelling() {
        for ns in [&["-n", "mesh"][..], &["-nmesh"], &["-n=mesh"], &["--namespace", "mesh"], &["--namespace=mesh"]] {
            let mut given = vec!["kubectl-cacerts", "--context", "prod"];
            given.extend_from_slice(ns);
            given.extend(["check-root", "--wait"]);
            let mut expected = vec!["kubectl-cacerts", "--context", "prod", "check-root"];
            expected.extend_from_slice(ns);
            expected.push("--wait");
            assert_eq!(kubectl_style_args(args(&given)), args(&expected), "{ns:?}");
        }
    }

    #[test]
    fn flag_values_are_not_mistaken_for_the_subcommand() {
        let given = args(&["k", "--kubeconfig", "inspect", "-n", "x", "sync", "--dry-run"]);
        let expected = args(&["k", "--kubeconfig", "inspect", "sync", "-n", "x", "--dry-run"]);
        assert_eq!(kubectl_style_args(given), expected);
    }

    #[test]
    fn arguments_after_the_subcommand_are_left_alone() {
        let given = args(&["k", "inspect", "-n", "x", "--source", "secret:cacerts"]);
        assert_eq!(kubectl_style_args(given.clone()), given);
    }
}
