//! What `ep-check` concludes and prints: the verdict and fix for each probed server ([`judge`]),
//! the one-word label of a [`Status`], and [`Report::render`], the aligned table, notes, full
//! hashes and result line that the command prints.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{ProbeResult, Report, ServerCheck, Status, VerifyFailure};
use crate::config::Service;
use crate::tls::channel_binding::EndPointHash;

/// The verdict and fix for one probe.
pub(super) fn judge(
    service: &Service,
    index: usize,
    front: EndPointHash,
    front_file: PathBuf,
    outcome: Result<ProbeResult, String>,
) -> ServerCheck {
    let server = service.servers[index].address;
    let (status, fix, probe) = match outcome {
        Err(reason) => (
            Status::Unreachable(reason),
            "check the server is up".to_string(),
            None,
        ),
        Ok(p) => {
            let (status, fix) = match (&p.verify_error, p.verify_failure) {
                (Some(reason), kind) => (Status::Untrusted(reason.clone()), untrusted_fix(service, &p, kind)),
                (None, _) if p.server_hash == front => (Status::Match, String::new()),
                (None, _) => (
                    Status::Mismatch,
                    format!(
                        "install the service's certificate ({}) on this server, or the server's on the service",
                        front_file.display()
                    ),
                ),
            };
            (status, fix, Some(p))
        }
    };
    ServerCheck {
        service: service.name.clone(),
        server,
        front,
        front_file,
        probe,
        status,
        fix,
    }
}

/// What to change when the service's verification refuses the server's certificate.
fn untrusted_fix(service: &Service, probe: &ProbeResult, kind: Option<VerifyFailure>) -> String {
    let names = if probe.names.is_empty() {
        "none".to_string()
    } else {
        probe.names.join(", ")
    };
    let ca = service.backend_tls.as_ref().and_then(|b| b.ca.as_ref());
    match (kind, ca) {
        (Some(VerifyFailure::WrongName), _) => {
            format!("set sni in [service.backend_tls] to a name of the server's certificate ({names})")
        }
        (Some(VerifyFailure::UnknownIssuer), Some(ca)) => format!(
            "set ca in [service.backend_tls] to the CA that issued the server's certificate (now {})",
            ca.display()
        ),
        (Some(VerifyFailure::UnknownIssuer), None) => {
            "set verify = \"ca\" and ca = the CA that issued the server's certificate in [service.backend_tls]".into()
        }
        (Some(VerifyFailure::CaAsServerCertificate), _) => "give the server (and the service) a certificate \
             without basicConstraints CA:TRUE (openssl req -x509 adds it unless -addext \
             basicConstraints=critical,CA:FALSE), or set verify = \"none\""
            .into(),
        (Some(VerifyFailure::Validity), _) => "renew the server's certificate (and install the same one on the service)".into(),
        _ => format!("check ca and sni in [service.backend_tls] against the server's certificate (names: {names})"),
    }
}

impl Status {
    /// The verdict as printed: `match`, `MISMATCH`, `untrusted: <reason>`, `unreachable: <reason>`.
    pub fn label(&self) -> String {
        match self {
            Status::Match => "match".into(),
            Status::Mismatch => "MISMATCH".into(),
            Status::Untrusted(reason) => format!("untrusted: {reason}"),
            Status::Unreachable(reason) => format!("unreachable: {reason}"),
        }
    }
}

impl Report {
    /// True when every checked server presents its service's certificate and no Extended Protection
    /// service has a problem: the exit status of `ep-check` is 0 exactly then.
    pub fn all_good(&self) -> bool {
        self.problems.is_empty() && self.checks.iter().all(|c| c.status == Status::Match)
    }

    /// The report as printed by `ringmaster ep-check`: an aligned table, notes, the full hashes of
    /// every server whose certificate differs, and a one-line result.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Extended Protection check of {}",
            self.config.display()
        );
        let _ = writeln!(out);
        if self.checks.is_empty() && self.passthrough.is_empty() && self.problems.is_empty() {
            let _ = writeln!(
                out,
                "No service has extended_protection = true: nothing to check."
            );
            return out;
        }
        if !self.checks.is_empty() {
            out.push_str(&self.table());
        }
        for name in &self.passthrough {
            let _ = writeln!(out, "{name}: passthrough: EP preserved, nothing to compare");
        }
        for problem in &self.problems {
            let _ = writeln!(out, "PROBLEM {problem}");
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(
                out,
                "Not checked (extended_protection is off): {}",
                self.skipped.join(", ")
            );
        }
        self.full_hashes(&mut out);
        let _ = writeln!(out);
        let bad = self
            .checks
            .iter()
            .filter(|c| c.status != Status::Match)
            .count();
        if self.all_good() {
            let _ = writeln!(
                out,
                "Result: OK: all {} checked server(s) present their service's certificate; Extended Protection works.",
                self.checks.len()
            );
        } else if bad > 0 {
            let _ = writeln!(
                out,
                "Result: {bad} of {} server(s) need attention: Extended Protection logins through them fail.",
                self.checks.len()
            );
        } else {
            let _ = writeln!(
                out,
                "Result: {} service problem(s) above.",
                self.problems.len()
            );
        }
        out
    }

    fn table(&self) -> String {
        let header = [
            "SERVICE",
            "SERVER",
            "SERVICE CERT",
            "SERVER CERT",
            "VERDICT",
            "FIX",
        ];
        let rows: Vec<[String; 6]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    c.service.clone(),
                    c.server.to_string(),
                    c.front.short(),
                    c.probe
                        .as_ref()
                        .map_or_else(|| "-".into(), |p| p.server_hash.short()),
                    c.status.label(),
                    if c.fix.is_empty() {
                        "-".into()
                    } else {
                        c.fix.clone()
                    },
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: [&str; 6]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, header);
        for row in &rows {
            line(
                &mut out,
                [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]].map(String::as_str),
            );
        }
        out
    }

    /// Full hashes of every server whose certificate is not the service's.
    fn full_hashes(&self, out: &mut String) {
        let differing: Vec<(&ServerCheck, &ProbeResult)> = self
            .checks
            .iter()
            .filter_map(|c| c.probe.as_ref().map(|p| (c, p)))
            .filter(|(c, p)| p.server_hash != c.front)
            .collect();
        if differing.is_empty() {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Certificates that differ (full tls-server-end-point hashes):"
        );
        for (c, p) in differing {
            let _ = writeln!(out, "  {} / {}", c.service, c.server);
            let _ = writeln!(
                out,
                "    service  {}  ({})",
                c.front,
                c.front_file.display()
            );
            let subject = if p.subject.is_empty() {
                "no subject".to_string()
            } else {
                p.subject.clone()
            };
            let names = if p.names.is_empty() {
                String::new()
            } else {
                format!("; names {}", p.names.join(", "))
            };
            let _ = writeln!(out, "    server   {}  ({subject}{names})", p.server_hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;

    use super::*;

    fn hash(byte: u8) -> EndPointHash {
        EndPointHash {
            algorithm: crate::tls::channel_binding::HashAlg::Sha256,
            digest: vec![byte; 32],
        }
    }

    fn check(status: Status, probe_hash: Option<EndPointHash>) -> ServerCheck {
        let probe = probe_hash.map(|server_hash| ProbeResult {
            server: "127.0.0.1:9443".parse().expect("addr"),
            sni: "mail.example.test".into(),
            certificate: CertificateDer::from(vec![0u8]),
            server_hash,
            verify_error: None,
            verify_failure: None,
            subject: "CN=mail.example.test".into(),
            names: vec!["mail.example.test".into()],
        });
        let fix = if status == Status::Match {
            String::new()
        } else {
            "do something".into()
        };
        ServerCheck {
            service: "exchange".into(),
            server: "127.0.0.1:9443".parse().expect("addr"),
            front: hash(1),
            front_file: PathBuf::from("certs/mail.pem"),
            probe,
            status,
            fix,
        }
    }

    #[test]
    fn an_empty_report_says_nothing_to_check_and_is_good() {
        let report = Report {
            config: "r.toml".into(),
            ..Report::default()
        };
        assert!(report.all_good());
        assert!(
            report.render().contains("nothing to check"),
            "{}",
            report.render()
        );
    }

    #[test]
    fn a_mismatch_is_not_good_and_prints_both_full_hashes() {
        let report = Report {
            config: "r.toml".into(),
            checks: vec![
                check(Status::Match, Some(hash(1))),
                check(Status::Mismatch, Some(hash(2))),
            ],
            ..Report::default()
        };
        assert!(!report.all_good());
        let text = report.render();
        assert!(text.contains("MISMATCH"), "{text}");
        assert!(text.contains(&hash(1).to_string()), "{text}");
        assert!(text.contains(&hash(2).to_string()), "{text}");
        assert!(text.contains("1 of 2 server(s) need attention"), "{text}");
    }

    #[test]
    fn table_columns_are_aligned() {
        let report = Report {
            config: "r.toml".into(),
            checks: vec![
                check(Status::Match, Some(hash(1))),
                check(Status::Unreachable("connect failed: refused".into()), None),
            ],
            ..Report::default()
        };
        let text = report.render();
        let table: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("SERVICE") || l.starts_with("exchange"))
            .collect();
        assert_eq!(table.len(), 3, "{text}");
        // The character (not byte) column where the verdict starts: short hashes contain '…'.
        let verdict_column = |l: &str| {
            let at = ["VERDICT", "match", "unreachable"]
                .iter()
                .find_map(|word| l.find(word))
                .expect("a verdict");
            l[..at].chars().count()
        };
        let columns: Vec<usize> = table.iter().map(|l| verdict_column(l)).collect();
        assert!(columns.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn passthrough_and_problems_are_reported() {
        let report = Report {
            config: "r.toml".into(),
            passthrough: vec!["owa".into()],
            problems: vec!["web: offload".into()],
            ..Report::default()
        };
        let text = report.render();
        assert!(
            text.contains("owa: passthrough: EP preserved, nothing to compare"),
            "{text}"
        );
        assert!(!report.all_good());
        let only_passthrough = Report {
            config: "r.toml".into(),
            passthrough: vec!["owa".into()],
            ..Report::default()
        };
        assert!(only_passthrough.all_good());
    }
}
