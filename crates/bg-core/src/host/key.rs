//! Private key files: is this one encrypted, and, for the OpenSSH format,
//! its decryption.
//!
//! libssh2 signs with an encrypted OpenSSH-format key (what `ssh-keygen`
//! writes by default, and what Jenkins' sshUserPrivateKey hands over) only
//! in some builds; the one we link fails with "Callback returned error". So
//! we decrypt such a key in memory (bcrypt-pbkdf and AES-256-CTR, as OpenSSH
//! does), check it with the format's own check bytes (which also tells a
//! wrong passphrase apart from a key the server refuses), and give libssh2
//! the unencrypted key in memory. Nothing is written to disk.

use std::fmt;
use std::path::Path;

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const MAGIC: &[u8] = b"openssh-key-v1\0";

/// Why an OpenSSH key could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    WrongPassphrase,
    Unsupported(String),
    Malformed,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::WrongPassphrase => f.write_str("wrong passphrase (BG_SSH_PASSPHRASE)"),
            KeyProblem::Unsupported(what) => write!(
                f,
                "encrypted with {what}, which is not supported; re-encrypt it with `ssh-keygen -p -Z aes256-ctr -f KEY`"
            ),
            KeyProblem::Malformed => f.write_str("not a readable OpenSSH private key"),
        }
    }
}

/// Whether a private key file needs a passphrase: the OpenSSH format names
/// its cipher, PEM says `ENCRYPTED`.
pub fn is_encrypted(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|text| text.contains("ENCRYPTED") || is_encrypted_openssh(&text))
}

/// Whether the text is an OpenSSH-format key with a cipher other than `none`.
pub fn is_encrypted_openssh(text: &str) -> bool {
    body(text)
        .and_then(|b| string(&b).map(|(cipher, _)| cipher != b"none"))
        .unwrap_or(false)
}

/// The same key, decrypted, as an unencrypted OpenSSH-format key file.
pub fn decrypt_openssh(text: &str, passphrase: &str) -> Result<String, KeyProblem> {
    let body = body(text).ok_or(KeyProblem::Malformed)?;
    let (cipher, rest) = string(&body).ok_or(KeyProblem::Malformed)?;
    let (kdf, rest) = string(rest).ok_or(KeyProblem::Malformed)?;
    let (kdf_options, rest) = string(rest).ok_or(KeyProblem::Malformed)?;
    let count = rest.get(..4).ok_or(KeyProblem::Malformed)?;
    if count != [0, 0, 0, 1] {
        return Err(KeyProblem::Unsupported("several keys in one file".into()));
    }
    let (public, rest) = string(&rest[4..]).ok_or(KeyProblem::Malformed)?;
    let (encrypted, _) = string(rest).ok_or(KeyProblem::Malformed)?;
    if cipher != b"aes256-ctr" {
        return Err(KeyProblem::Unsupported(
            String::from_utf8_lossy(cipher).into_owned(),
        ));
    }
    if kdf != b"bcrypt" {
        return Err(KeyProblem::Unsupported(format!(
            "key derivation {}",
            String::from_utf8_lossy(kdf)
        )));
    }
    let (salt, rest) = string(kdf_options).ok_or(KeyProblem::Malformed)?;
    let rounds = u32::from_be_bytes(
        rest.get(..4)
            .ok_or(KeyProblem::Malformed)?
            .try_into()
            .map_err(|_| KeyProblem::Malformed)?,
    );

    let mut key_iv = [0u8; 48];
    bcrypt_pbkdf::bcrypt_pbkdf(passphrase.as_bytes(), salt, rounds, &mut key_iv)
        .map_err(|_| KeyProblem::Malformed)?;
    let mut private = encrypted.to_vec();
    ctr::Ctr128BE::<aes::Aes256>::new(key_iv[..32].into(), key_iv[32..].into())
        .apply_keystream(&mut private);
    // The private section starts with the same random 32-bit number twice.
    if private.len() < 8 || private[..4] != private[4..8] {
        return Err(KeyProblem::WrongPassphrase);
    }

    let mut plain = MAGIC.to_vec();
    for field in [&b"none"[..], b"none", b""] {
        put_string(&mut plain, field);
    }
    plain.extend_from_slice(&[0, 0, 0, 1]);
    put_string(&mut plain, public);
    put_string(&mut plain, &private);
    let encoded = STANDARD.encode(&plain);
    let mut out = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in encoded.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(line).map_err(|_| KeyProblem::Malformed)?);
        out.push('\n');
    }
    out.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    Ok(out)
}

/// The decoded body of an OpenSSH-format key, after its magic.
fn body(text: &str) -> Option<Vec<u8>> {
    if !text.contains("BEGIN OPENSSH PRIVATE KEY") {
        return None;
    }
    let joined: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let bytes = STANDARD.decode(joined).ok()?;
    bytes.strip_prefix(MAGIC).map(<[u8]>::to_vec)
}

/// One SSH wire-format string and the rest.
fn string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    Some((bytes.get(4..4 + len)?, bytes.get(4 + len..)?))
}

fn put_string(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH_KEYGEN: &str = "cannot run ssh-keygen: it comes with the Debian package \
        openssh-client (`bash scripts/install-test-deps.sh` installs what the tests need)";

    fn keygen(dir: &Path, passphrase: &str) -> (String, String) {
        let path = dir.join("k");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", "c", "-f"])
            .arg(&path)
            .status()
            .expect(SSH_KEYGEN);
        assert!(status.success());
        (
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(path.with_extension("pub")).unwrap(),
        )
    }

    #[test]
    fn decrypts_what_ssh_keygen_encrypts() {
        let dir = tempfile::tempdir().unwrap();
        let (encrypted, public) = keygen(dir.path(), "pass $(x) 'y'");
        assert!(is_encrypted_openssh(&encrypted));
        let plain = decrypt_openssh(&encrypted, "pass $(x) 'y'").unwrap();
        assert!(!is_encrypted_openssh(&plain));
        // ssh-keygen itself reads the result and derives the same public key.
        let path = dir.path().join("plain");
        std::fs::write(&path, &plain).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let derived = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .expect(SSH_KEYGEN);
        assert!(
            derived.status.success(),
            "{}",
            String::from_utf8_lossy(&derived.stderr)
        );
        let derived = String::from_utf8(derived.stdout).unwrap();
        assert_eq!(
            derived.split_whitespace().nth(1),
            public.split_whitespace().nth(1)
        );
    }

    #[test]
    fn a_wrong_passphrase_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (encrypted, _) = keygen(dir.path(), "right");
        assert_eq!(
            decrypt_openssh(&encrypted, "wrong"),
            Err(KeyProblem::WrongPassphrase)
        );
    }

    #[test]
    fn unencrypted_and_pem_keys_are_not_openssh_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, _) = keygen(dir.path(), "");
        assert!(!is_encrypted_openssh(&plain));
        assert!(!is_encrypted_openssh(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        ));
    }
}
