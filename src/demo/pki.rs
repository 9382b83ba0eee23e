//! The demo's files: a private temporary directory ([`DemoDir`], removed when dropped) and the
//! self-signed certificate for [`super::DEMO_NAMES`] written into it as `cert.pem` and `key.pem`
//! ([`write_certificate`]), kept as DER too for the demo servers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use super::{DemoError, DEMO_NAMES};

/// The private temporary directory of the demo, removed (best effort) when dropped.
pub(super) struct DemoDir(PathBuf);

impl DemoDir {
    /// Creates `$TMPDIR/ringmaster-demo-<pid>` with mode 0700, replacing a leftover of that name.
    pub(super) fn create() -> Result<Self, DemoError> {
        let path = std::env::temp_dir().join(format!("ringmaster-demo-{}", std::process::id()));
        let create = |path: &Path| {
            use std::os::unix::fs::DirBuilderExt;
            // 0700: the private key is written here.
            fs::DirBuilder::new().mode(0o700).create(path)
        };
        let made = match create(&path) {
            // Left over by an earlier process with the same PID, which cannot still be running.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_dir_all(&path).and_then(|()| create(&path))
            }
            other => other,
        };
        made.map_err(|source| DemoError::Directory {
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The generated certificate, as files and as DER.
pub(super) struct CertFiles {
    /// `cert.pem` in the demo directory.
    pub(super) cert_pem: PathBuf,
    /// `key.pem` (PKCS#8) in the demo directory.
    pub(super) key_pem: PathBuf,
    /// The certificate, for the demo servers and the banner's hash.
    pub(super) cert_der: CertificateDer<'static>,
    /// The private key, PKCS#8 DER.
    pub(super) key_der: Vec<u8>,
}

/// Generates a self-signed certificate for [`DEMO_NAMES`] (CN `ringmaster demo`) and writes it
/// and its key as PEM into `dir`.
pub(super) fn write_certificate(dir: &Path) -> Result<CertFiles, DemoError> {
    let fail = |e: rcgen::Error| DemoError::Certificate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params =
        rcgen::CertificateParams::new(DEMO_NAMES.map(String::from).to_vec()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ringmaster demo");
    let cert = params.self_signed(&key).map_err(fail)?;
    let files = CertFiles {
        cert_pem: dir.join("cert.pem"),
        key_pem: dir.join("key.pem"),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    };
    write_file(&files.cert_pem, cert.pem().as_bytes())?;
    write_file(&files.key_pem, key.serialize_pem().as_bytes())?;
    Ok(files)
}

/// Writes `contents` to `path`, naming the file in the error.
pub(super) fn write_file(path: &Path, contents: &[u8]) -> Result<(), DemoError> {
    fs::write(path, contents).map_err(|source| DemoError::Write {
        path: path.to_path_buf(),
        source,
    })
}
