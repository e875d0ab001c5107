//! Shell completions and man pages, generated from the clap definitions in [`crate::cli`] so they never drift
//! from the flags. No I/O beyond writing the result; no Kubernetes or Azure access.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// The clap command for the man pages. `help` has no page of its own (clap_mangen's `generate_to` leaves it
/// out too), so the main page does not list it.
fn man_command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building propagates the global flags into every subcommand and names subcommand pages `NAME-SUB`.
    cmd.build();
    cmd
}

/// Writes the completion script for `args.shell`.
pub fn completions(args: &CompletionsArgs, bin_name: &'static str, out: &mut dyn Write) -> std::io::Result<()> {
    // Not pre-built: clap_complete derives its names from the bin names it sets while building.
    let mut cmd = Cli::command();
    // Rendered in memory first: clap_complete panics on a failed write (`| head`), a plain write error does not.
    let mut script = Vec::new();
    if args.shell == clap_complete::Shell::Bash && bin_name.contains('-') {
        // clap_complete's bash script never completes a subcommand's flags when the binary name has a hyphen
        // (its dispatch loop and case arms escape `-` differently, clap-rs/clap#6421, open). Generated for an
        // underscore name, the two agree; only the `complete` registration must name the real binary.
        let alias = bin_name.replace('-', "_");
        clap_complete::generate(args.shell, &mut cmd, alias.clone(), &mut script);
        let text = String::from_utf8_lossy(&script)
            .lines()
            .map(|line| match line.strip_suffix(&format!(" {alias}")) {
                Some(head) if line.trim_start().starts_with("complete ") => format!("{head} {bin_name}\n"),
                _ => format!("{line}\n"),
            })
            .collect::<String>();
        return out.write_all(text.as_bytes());
    }
    clap_complete::generate(args.shell, &mut cmd, bin_name, &mut script);
    out.write_all(&script)
}

/// Failure of `man`: an unknown subcommand is a usage error, a failed write is an I/O error.
#[derive(Debug, thiserror::Error)]
pub enum ManError {
    #[error("unknown subcommand {0:?}: expected one of {1}")]
    UnknownSubcommand(String, String),
    #[error("failed to write the man page: {0}")]
    Write(#[from] std::io::Error),
}

/// Writes the main page, a subcommand's page, or (with `--out-dir`) every page as files.
pub fn man(args: &ManArgs, out: &mut dyn Write) -> Result<(), ManError> {
    let cmd = man_command();
    if let Some(dir) = &args.out_dir {
        return write_all(cmd, dir);
    }
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => {
                let names: Vec<_> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
                return Err(ManError::UnknownSubcommand(name.clone(), names.join(", ")));
            }
        },
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff)?;
    out.write_all(&roff)?;
    Ok(())
}

fn write_all(cmd: clap::Command, dir: &Path) -> Result<(), ManError> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn bash_completion_offers_every_subcommand_and_their_flags() {
        let args = CompletionsArgs { shell: clap_complete::Shell::Bash };
        let text = render(|o| completions(&args, "cacerts-sync", o).unwrap());
        for word in ["sync", "watch", "check-root", "inspect", "--vault-url", "--istiod-selector", "--kubeconfig"] {
            assert!(text.contains(word), "{word} missing from the bash completion");
        }
        let registers = |l: &str| l.trim_start().starts_with("complete -F") && l.ends_with(" cacerts-sync");
        assert!(text.lines().any(registers), "registers for the binary name");
    }

    #[test]
    fn a_subcommand_page_is_named_after_both_commands() {
        let args = ManArgs { subcommand: Some("sync".into()), out_dir: None };
        let text = render(|o| man(&args, o).unwrap());
        assert!(text.starts_with(".ie"), "roff");
        assert!(text.contains(".TH cacerts-sync-sync 1"), "{}", &text[..200.min(text.len())]);
        assert!(text.contains("consistency\\-timeout"), "flags are on the page");
    }

    #[test]
    fn an_unknown_subcommand_page_is_refused_with_the_known_ones() {
        let args = ManArgs { subcommand: Some("nope".into()), out_dir: None };
        let err = man(&args, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("check-root"), "{err}");
    }
}
