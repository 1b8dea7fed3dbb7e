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

/// The core's form of the password.
pub(crate) fn to_password(bytes: &[u8]) -> Password {
    Password::new(bytes.to_vec()).expect("checked by read")
}
