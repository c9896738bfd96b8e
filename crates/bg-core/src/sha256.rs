//! sha256 of local files and of streams on their way to a host.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The file's sha256 as lowercase hex, read in large pieces: memory stays
/// flat whatever its size.
pub fn file(path: &Path) -> std::io::Result<String> {
    let mut reader = Reader::new(std::fs::File::open(path)?);
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(reader.finish())
}

/// A reader that hashes every byte that passes through it, so that a file
/// sent somewhere is read once, not once to hash and once to send.
pub struct Reader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R> std::fmt::Debug for Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256::Reader({} bytes)", self.len)
    }
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// How many bytes have passed.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sha256 of what passed, as lowercase hex.
    pub fn finish(self) -> String {
        self.into_parts().1
    }

    /// The reader back, and the sha256 of what passed.
    pub fn into_parts(self) -> (R, String) {
        let hex = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (self.inner, hex)
    }
}

impl<R: Read> Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn hashes_what_passes() {
        let mut reader = Reader::new(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(reader.len(), 3);
        assert_eq!(reader.finish(), ABC);
    }

    #[test]
    fn hashes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(file(&path).unwrap(), ABC);
        assert!(file(&dir.path().join("absent")).is_err());
    }
}
