//! The network's password: from `--password-file`, from standard input (`weave launch` hands
//! it to the daemon that way) or from `WEAVE_PASSWORD`; never from the command line, never
//! logged. Its bytes are wiped from memory when dropped.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use router_core::Password;
use zeroize::Zeroizing;

use crate::RouterArgs;

/// The environment variable a password may come from.
pub(crate) const ENV: &str = "WEAVE_PASSWORD";

/// The password given to `launch` or `router`, if any, checked (not empty).
pub(crate) fn read(args: &RouterArgs) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    let bytes = if args.password_stdin {
        let mut v = Zeroizing::new(Vec::new());
        std::io::stdin().read_to_end(&mut v).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        v
    } else if let Some(path) = &args.password_file {
        let v = Zeroizing::new(std::fs::read(path).map_err(|e| {
            format!(
                "cannot read the password file {}: {e}; give a readable file (chmod 600, owned by root)",
                path.display()
            )
        })?);
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "warning: the password file {} can be read by other users; `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
        v
    } else if let Some(v) = std::env::var_os(ENV) {
        Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(v))
    } else {
        return Ok(None);
    };
    // Checked once here so that both `launch` and the daemon refuse a bad one.
    Password::new(bytes.to_vec()).map_err(|e| format!("{e}: put the network's password in the file (or {ENV})"))?;
    Ok(Some(bytes))
}

/// Whether the password would come from the environment (no stdin or file given).
pub(crate) fn from_env(args: &RouterArgs) -> bool {
    !args.password_stdin && args.password_file.is_none() && std::env::var_os(ENV).is_some()
}

/// Runs this program again, as the same process (same PID, as a service manager expects),
/// without `WEAVE_PASSWORD` in its environment: the password goes to the new image on its
/// standard input (`--password-stdin`), so that `/proc/PID/environ` never shows it. Returns
/// only on failure.
pub(crate) fn reexec_without_env(password: &[u8]) -> String {
    use std::io::Write;
    use std::os::unix::process::CommandExt;

    // The whole password must fit the pipe, so that writing it cannot block.
    if password.len() > 4096 {
        return format!("the password in {ENV} is longer than 4096 bytes: use a password file");
    }
    let (r, w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return format!("cannot make a pipe for the password: {e}"),
    };
    let mut w = std::fs::File::from(w);
    if let Err(e) = w.write_all(password) {
        return format!("cannot hand the password over: {e}");
    }
    drop(w);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return format!("cannot find this program to run it again: {e}"),
    };
    // The flag goes right after the subcommand: after a `--` it would be taken for a peer.
    let mut args = std::env::args_os().skip(1);
    let e = std::process::Command::new(exe)
        .args(args.next())
        .arg("--password-stdin")
        .args(args)
        .env_remove(ENV)
        .stdin(std::process::Stdio::from(r))
        .exec();
    format!("cannot run this program again without {ENV} in its environment: {e}")
}

/// The core's form of the password.
pub(crate) fn to_password(bytes: &[u8]) -> Password {
    Password::new(bytes.to_vec()).expect("checked by read")
}
