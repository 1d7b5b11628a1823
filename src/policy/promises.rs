//! The promise table: for every authority option and every layout sigil
//! reads evidence from, whether the option is **enforced** there (naming
//! the test that admits evidence meeting it and the one that denies
//! evidence that does not) or **refused** when the policy loads (naming
//! the field and what the refusal says). There is no third state:
//! [`promise`] is an exhaustive match, so a new layout or option cannot be
//! added without deciding each cell.
//!
//! This module owns the table only. It enforces nothing: the collectors
//! and the judge do that, `validate.rs` refuses. `tests/promises.rs`
//! proves the enforced cells layout by layout; this module's tests load
//! every refusal's example and check that it is refused with those words;
//! `tests/docs.rs` keeps `docs/policies.md`'s copy of the table current.

/// A layout sigil reads an authority's evidence from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceLayout {
    /// cosign's `sha256-<hex>.sig` tag (simple-signing layers).
    Sig,
    /// cosign's `sha256-<hex>.att` tag (DSSE in-toto layers).
    Att,
    /// cosign's OCI 1.1 signature artifact, an OCI referrer.
    Oci11Signature,
    /// A Sigstore bundle (v0.1–v0.3), an OCI referrer.
    BundleReferrer,
    /// BuildKit's attestation manifests inside an index, vouched for by a
    /// signature over the index (in the authority's signature layout).
    BuildkitIndex,
    /// Sigstore bundles listed by GitHub's attestation API.
    GithubApi,
    /// Notation signature envelopes, OCI referrers.
    Notation,
}

impl EvidenceLayout {
    /// Every layout, in the table's column order.
    pub const ALL: [EvidenceLayout; 7] = [
        EvidenceLayout::Sig,
        EvidenceLayout::Att,
        EvidenceLayout::Oci11Signature,
        EvidenceLayout::BundleReferrer,
        EvidenceLayout::BuildkitIndex,
        EvidenceLayout::GithubApi,
        EvidenceLayout::Notation,
    ];

    /// The column heading.
    pub fn title(self) -> &'static str {
        match self {
            EvidenceLayout::Sig => "`.sig` tag",
            EvidenceLayout::Att => "`.att` tag",
            EvidenceLayout::Oci11Signature => "OCI 1.1 signature",
            EvidenceLayout::BundleReferrer => "bundle referrer",
            EvidenceLayout::BuildkitIndex => "BuildKit index",
            EvidenceLayout::GithubApi => "GitHub API",
            EvidenceLayout::Notation => "Notation",
        }
    }
}

/// An authority option, a row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityOption {
    /// `key` (`data`, `secretRef`, `kms`).
    Key,
    /// `key.hashAlgorithm`.
    KeyHashAlgorithm,
    /// `keyless.identities[]` issuer and subject.
    KeylessIdentities,
    /// `keyless.identities[]` Fulcio claims (`sourceRepositoryURI`, …).
    KeylessClaims,
    /// `keyless.ca-cert`.
    KeylessCaCert,
    /// `keyless.insecureIgnoreSCT`.
    KeylessInsecureIgnoreSct,
    /// `ctlog`.
    Ctlog,
    /// `rfc3161timestamp`.
    Rfc3161Timestamp,
    /// `keyless.trustRootRef`, `ctlog.trustRootRef`, `rfc3161timestamp.trustRootRef`.
    TrustRootRef,
    /// `source[].oci`.
    SourceOci,
    /// `source[].tagPrefix`.
    SourceTagPrefix,
    /// `source[].signaturePullSecrets`.
    SourceSignaturePullSecrets,
    /// `source[].githubAttestations`.
    SourceGithubAttestations,
    /// `signatureFormat`.
    SignatureFormat,
    /// `attestations[]` (`predicateType`).
    Attestations,
    /// `attestations[].policy`.
    AttestationPolicy,
    /// `static`.
    Static,
    /// `notation.trustStore.certificates` and `notation.trustedIdentities`.
    NotationTrust,
    /// `notation.verificationLevel`.
    NotationLevel,
    /// `notation.trustStore.tsaCertificates`.
    NotationTsa,
    /// `notation.trustStore.crls`.
    NotationCrls,
}

impl AuthorityOption {
    /// Every option, in the table's row order.
    pub const ALL: [AuthorityOption; 21] = [
        AuthorityOption::Key,
        AuthorityOption::KeyHashAlgorithm,
        AuthorityOption::KeylessIdentities,
        AuthorityOption::KeylessClaims,
        AuthorityOption::KeylessCaCert,
        AuthorityOption::KeylessInsecureIgnoreSct,
        AuthorityOption::Ctlog,
        AuthorityOption::Rfc3161Timestamp,
        AuthorityOption::TrustRootRef,
        AuthorityOption::SourceOci,
        AuthorityOption::SourceTagPrefix,
        AuthorityOption::SourceSignaturePullSecrets,
        AuthorityOption::SourceGithubAttestations,
        AuthorityOption::SignatureFormat,
        AuthorityOption::Attestations,
        AuthorityOption::AttestationPolicy,
        AuthorityOption::Static,
        AuthorityOption::NotationTrust,
        AuthorityOption::NotationLevel,
        AuthorityOption::NotationTsa,
        AuthorityOption::NotationCrls,
    ];

    /// The row heading: the field as a policy spells it.
    pub fn field(self) -> &'static str {
        match self {
            AuthorityOption::Key => "`key`",
            AuthorityOption::KeyHashAlgorithm => "`key.hashAlgorithm`",
            AuthorityOption::KeylessIdentities => "`keyless.identities` (issuer, subject)",
            AuthorityOption::KeylessClaims => "`keyless.identities` (Fulcio claims)",
            AuthorityOption::KeylessCaCert => "`keyless.ca-cert`",
            AuthorityOption::KeylessInsecureIgnoreSct => "`keyless.insecureIgnoreSCT`",
            AuthorityOption::Ctlog => "`ctlog`",
            AuthorityOption::Rfc3161Timestamp => "`rfc3161timestamp`",
            AuthorityOption::TrustRootRef => "`trustRootRef` (any)",
            AuthorityOption::SourceOci => "`source.oci`",
            AuthorityOption::SourceTagPrefix => "`source.tagPrefix`",
            AuthorityOption::SourceSignaturePullSecrets => "`source.signaturePullSecrets`",
            AuthorityOption::SourceGithubAttestations => "`source.githubAttestations`",
            AuthorityOption::SignatureFormat => "`signatureFormat`",
            AuthorityOption::Attestations => "`attestations`",
            AuthorityOption::AttestationPolicy => "`attestations[].policy`",
            AuthorityOption::Static => "`static`",
            AuthorityOption::NotationTrust => "`notation` trust store and identities",
            AuthorityOption::NotationLevel => "`notation.verificationLevel`",
            AuthorityOption::NotationTsa => "`notation.trustStore.tsaCertificates`",
            AuthorityOption::NotationCrls => "`notation.trustStore.crls`",
        }
    }
}

/// One cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// Enforced in this layout: `pass` admits evidence that meets the
    /// option, `fail` denies evidence that does not (`file::function`
    /// under `tests/`; one test may prove both).
    Enforced {
        /// The test that admits evidence meeting the option.
        pass: &'static str,
        /// The test that denies evidence not meeting it.
        fail: &'static str,
    },
    /// Refused when the policy loads: an authority asking for this option
    /// in this layout is invalid.
    Refused {
        /// The field the refusal names.
        field: &'static str,
        /// An authority (YAML flow) that asks for it.
        example: &'static str,
        /// Words the refusal says.
        says: &'static str,
    },
}

const KEYLESS: &str =
    "{identities: [{issuer: 'https://issuer.example', subject: 'a@example.com'}]}";
const NOTATION: &str = "{trustStore: {certificates: CERT}, trustedIdentities: ['*']}";

/// Both tests of one `tests/promises.rs` function.
const fn proven(test: &'static str) -> Promise {
    Promise::Enforced {
        pass: test,
        fail: test,
    }
}

/// A `notation` option in `layout`: enforced in Notation's own layout,
/// refused beside the selector of any other.
fn notation_in(layout: EvidenceLayout, option: AuthorityOption) -> Promise {
    use EvidenceLayout::*;
    match layout {
        Sig => Promise::Refused {
            field: "spec.authorities[0]",
            example: "{notation: NOTATION, key: {data: KEY}}",
            says: "expected exactly one of key, keyless, static, notation",
        },
        Att | BuildkitIndex => Promise::Refused {
            field: "spec.authorities[0]",
            example:
                "{notation: NOTATION, attestations: [{name: p, predicateType: slsaprovenance1}]}",
            says: "notation cannot be combined with attestations",
        },
        Oci11Signature | BundleReferrer => Promise::Refused {
            field: "spec.authorities[0]",
            example: "{notation: NOTATION, signatureFormat: bundle}",
            says: "notation cannot be combined with signatureFormat",
        },
        GithubApi => Promise::Refused {
            field: "spec.authorities[0]",
            example: "{notation: NOTATION, source: [{githubAttestations: {owner: acme}}]}",
            says: "notation cannot be combined with source",
        },
        Notation => notation_test(option),
    }
}

/// The cell of option `o` in layout `l`.
pub fn promise(o: AuthorityOption, l: EvidenceLayout) -> Promise {
    use AuthorityOption as O;
    use EvidenceLayout::*;
    let sigstore = !matches!(l, Notation);
    match o {
        // Signer options: every Sigstore layout verifies the signer the
        // same way; in Notation they cannot be asked for.
        O::Key => match l {
            GithubApi => Promise::Refused {
                field: "spec.authorities[0].key",
                example: "{key: {data: KEY}, source: [{githubAttestations: {owner: acme}}]}",
                says: "a key authority cannot read source.githubAttestations",
            },
            Notation => Promise::Refused {
                field: "spec.authorities[0]",
                example: "{key: {data: KEY}, notation: NOTATION}",
                says: "expected exactly one of key, keyless, static, notation",
            },
            _ => proven("promises::key_in_every_layout"),
        },
        O::KeyHashAlgorithm => match l {
            Sig | Att | BuildkitIndex => proven("promises::hash_algorithm_in_every_layout"),
            Oci11Signature | BundleReferrer => Promise::Refused {
                field: "spec.authorities[0].key.hashAlgorithm",
                example: "{key: {data: KEY, hashAlgorithm: sha512}, signatureFormat: bundle}",
                says: "the bundle layout (signatureFormat: bundle) names its own digest algorithm",
            },
            GithubApi => promise(O::Key, GithubApi),
            Notation => promise(O::Key, Notation),
        },
        O::KeylessIdentities if sigstore => proven("promises::keyless_identities_in_every_layout"),
        O::KeylessClaims if sigstore => proven("promises::keyless_claims_in_every_layout"),
        O::KeylessCaCert => match l {
            Sig | Att | BuildkitIndex => proven("promises::ca_cert_in_every_layout"),
            Oci11Signature | BundleReferrer => Promise::Refused {
                field: "spec.authorities[0].keyless.ca-cert",
                example: "{keyless: {ca-cert: {data: CERT}, identities: [{issuer: 'https://issuer.example', subject: 'a@example.com'}]}, signatureFormat: bundle}",
                says: "a ca-cert authority reads only cosign's .sig/.att tags",
            },
            GithubApi => Promise::Refused {
                field: "spec.authorities[0].keyless.ca-cert",
                example: "{keyless: {ca-cert: {data: CERT}, identities: [{issuer: 'https://issuer.example', subject: 'a@example.com'}]}, source: [{githubAttestations: {owner: acme}}]}",
                says: "GitHub's attestation API (source.githubAttestations) is verified against trust roots",
            },
            Notation => notation_keyless(),
        },
        O::KeylessInsecureIgnoreSct if sigstore => proven("promises::sct_in_every_layout"),
        O::Ctlog if sigstore => proven("promises::ctlog_in_every_layout"),
        O::Rfc3161Timestamp if sigstore => proven("promises::rfc3161timestamp_in_every_layout"),
        O::TrustRootRef if sigstore => proven("promises::trust_root_ref_in_every_layout"),
        O::KeylessIdentities | O::KeylessClaims | O::KeylessInsecureIgnoreSct => {
            notation_keyless()
        }
        O::Ctlog => Promise::Refused {
            field: "spec.authorities[0]",
            example: "{notation: NOTATION, ctlog: {}}",
            says: "notation cannot be combined with ctlog",
        },
        O::Rfc3161Timestamp | O::TrustRootRef => Promise::Refused {
            field: "spec.authorities[0]",
            example: "{notation: NOTATION, rfc3161timestamp: {trustRootRef: other}}",
            says: "notation cannot be combined with rfc3161timestamp",
        },
        // Where the evidence is read from.
        O::SourceOci => match l {
            GithubApi => Promise::Refused {
                field: "spec.authorities[0].source[0].oci",
                example: "{keyless: KEYLESS, source: [{oci: 'registry.example/sigs', githubAttestations: {owner: acme}}]}",
                says: "githubAttestations reads GitHub's API, not a registry",
            },
            Notation => notation_source(),
            _ => proven("promises::source_oci_in_every_layout"),
        },
        O::SourceTagPrefix => match l {
            Sig | Att | BuildkitIndex => proven("promises::tag_prefix_in_every_layout"),
            Oci11Signature | BundleReferrer => Promise::Refused {
                field: "spec.authorities[0].source[0].tagPrefix",
                example: "{key: {data: KEY}, signatureFormat: bundle, source: [{tagPrefix: 'sigs-'}]}",
                says: "reads OCI referrers, not cosign's .sig/.att tags",
            },
            GithubApi => Promise::Refused {
                field: "spec.authorities[0].source[0].tagPrefix",
                example: "{keyless: KEYLESS, source: [{tagPrefix: 'sigs-', githubAttestations: {owner: acme}}]}",
                says: "githubAttestations reads GitHub's API, not a registry",
            },
            Notation => notation_source(),
        },
        O::SourceSignaturePullSecrets => match l {
            GithubApi => Promise::Refused {
                field: "spec.authorities[0].source[0].signaturePullSecrets",
                example: "{keyless: KEYLESS, source: [{signaturePullSecrets: [{name: regcred}], githubAttestations: {owner: acme}}]}",
                says: "githubAttestations reads GitHub's API, not a registry",
            },
            Notation => notation_source(),
            _ => proven("cluster::apiserver_calls_sigil_and_acts_on_its_answers"),
        },
        O::SourceGithubAttestations => match l {
            Sig | Att => Promise::Refused {
                field: "spec.authorities[0].signatureFormat",
                example: "{keyless: KEYLESS, signatureFormat: legacy, source: [{githubAttestations: {owner: acme}}]}",
                says: "source.githubAttestations lists Sigstore bundles from GitHub's attestation API",
            },
            Oci11Signature | BundleReferrer | BuildkitIndex | GithubApi => {
                proven("promises::the_github_source_replaces_the_registry")
            }
            Notation => notation_in(GithubApi, O::NotationTrust),
        },
        O::SignatureFormat => match l {
            Notation => Promise::Refused {
                field: "spec.authorities[0]",
                example: "{notation: NOTATION, signatureFormat: bundle}",
                says: "notation cannot be combined with signatureFormat",
            },
            _ => proven("promises::signature_format_selects_the_layout"),
        },
        // What must be shown beside (or instead of) a signature.
        O::Attestations | O::AttestationPolicy if sigstore => {
            proven("promises::attestations_in_every_layout")
        }
        O::Attestations | O::AttestationPolicy => Promise::Refused {
            field: "spec.authorities[0]",
            example: "{notation: NOTATION, attestations: [{name: p, predicateType: slsaprovenance1}]}",
            says: "notation cannot be combined with attestations",
        },
        O::Static => match l {
            Sig => Promise::Refused {
                field: "spec.authorities[0]",
                example: "{static: {action: pass}, key: {data: KEY}}",
                says: "expected exactly one of key, keyless, static, notation",
            },
            Att | BuildkitIndex => Promise::Refused {
                field: "spec.authorities[0]",
                example: "{static: {action: pass}, attestations: [{name: p, predicateType: slsaprovenance1}]}",
                says: "static cannot be combined with attestations",
            },
            Oci11Signature | BundleReferrer => Promise::Refused {
                field: "spec.authorities[0]",
                example: "{static: {action: pass}, signatureFormat: bundle}",
                says: "static cannot be combined with signatureFormat",
            },
            GithubApi => Promise::Refused {
                field: "spec.authorities[0]",
                example: "{static: {action: pass}, source: [{githubAttestations: {owner: acme}}]}",
                says: "static cannot be combined with source",
            },
            Notation => Promise::Refused {
                field: "spec.authorities[0]",
                example: "{static: {action: pass}, notation: NOTATION}",
                says: "expected exactly one of key, keyless, static, notation",
            },
        },
        O::NotationTrust | O::NotationLevel | O::NotationTsa | O::NotationCrls => notation_in(l, o),
    }
}

/// Keyless options asked of a notation authority.
fn notation_keyless() -> Promise {
    Promise::Refused {
        field: "spec.authorities[0]",
        example: "{notation: NOTATION, keyless: KEYLESS}",
        says: "expected exactly one of key, keyless, static, notation",
    }
}

/// Source options asked of a notation authority.
fn notation_source() -> Promise {
    Promise::Refused {
        field: "spec.authorities[0]",
        example: "{notation: NOTATION, source: [{oci: 'registry.example/sigs'}]}",
        says: "notation cannot be combined with source",
    }
}

/// The Notation tests of each Notation option.
fn notation_test(o: AuthorityOption) -> Promise {
    match o {
        AuthorityOption::NotationLevel | AuthorityOption::NotationTsa => {
            proven("notation::timestamps_and_levels_decide_expired_certificates")
        }
        AuthorityOption::NotationCrls => {
            proven("notation::revocation_is_checked_against_inline_crls_only")
        }
        _ => proven("notation::notation_signatures_are_admitted_only_when_they_verify"),
    }
}

/// An example authority with its placeholders filled in (`KEY`: a P-256
/// public key; `CERT`: a CA certificate; `KEYLESS`, `NOTATION`: minimal
/// authorities of that kind).
pub fn example_authority(example: &str, key_pem: &str, cert_pem: &str) -> String {
    let quote = |pem: &str| format!("{:?}", pem);
    example
        .replace("NOTATION", NOTATION)
        .replace("KEYLESS", KEYLESS)
        .replace("KEY", &quote(key_pem))
        .replace("CERT", &quote(cert_pem))
}

/// The table as Markdown: one row an option, one column a layout; ✓ is
/// enforced, ✗ refused when the policy loads (the refusal's words follow
/// the table), with each cell's tests listed after it.
pub fn markdown() -> String {
    let mut out = String::from("| option |");
    for l in EvidenceLayout::ALL {
        out.push_str(&format!(" {} |", l.title()));
    }
    out.push_str("\n|---|");
    for _ in EvidenceLayout::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    let mut refusals: Vec<(&str, &str)> = Vec::new();
    let mut tests: Vec<(AuthorityOption, Vec<&str>)> = Vec::new();
    for o in AuthorityOption::ALL {
        out.push_str(&format!("| {} |", o.field()));
        let mut row_tests: Vec<&str> = Vec::new();
        for l in EvidenceLayout::ALL {
            match promise(o, l) {
                Promise::Enforced { pass, fail } => {
                    out.push_str(" ✓ |");
                    for t in [pass, fail] {
                        if !row_tests.contains(&t) {
                            row_tests.push(t);
                        }
                    }
                }
                Promise::Refused { says, field, .. } => {
                    let n = match refusals.iter().position(|r| r.1 == says) {
                        Some(i) => i + 1,
                        None => {
                            refusals.push((field, says));
                            refusals.len()
                        }
                    };
                    out.push_str(&format!(" ✗{n} |"));
                }
            }
        }
        out.push('\n');
        tests.push((o, row_tests));
    }
    out.push_str("\nRefused when the policy loads, naming the field:\n\n");
    for (i, (field, says)) in refusals.iter().enumerate() {
        out.push_str(&format!("{}. `{field}`: “…{says}…”\n", i + 1));
    }
    out.push_str("\nThe tests that prove each ✓ (under `tests/`):\n\n");
    for (o, t) in tests {
        if !t.is_empty() {
            let names: Vec<String> = t.iter().map(|n| format!("`{n}`")).collect();
            out.push_str(&format!("- {}: {}\n", o.field(), names.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::files::parse_documents;
    use crate::policy::validate::validate;

    fn refusal_of(example: &str) -> String {
        let cert = rcgen::generate_simple_self_signed(vec!["ca.example".to_string()])
            .unwrap()
            .cert
            .pem();
        let key = rcgen::KeyPair::generate().unwrap().public_key_pem();
        let authority = example_authority(example, &key, &cert);
        let yaml = format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {{name: p}}\nspec:\n  images: [{{glob: '**'}}]\n  authorities: [{authority}]\n"
        );
        let docs = parse_documents(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        validate(docs[0].spec.as_ref().unwrap()).message()
    }

    #[test]
    fn every_refusal_is_made_when_the_policy_loads_naming_its_field() {
        for o in AuthorityOption::ALL {
            for l in EvidenceLayout::ALL {
                if let Promise::Refused {
                    field,
                    example,
                    says,
                } = promise(o, l)
                {
                    let message = refusal_of(example);
                    assert!(
                        message.contains(&format!("{field}: ")) && message.contains(says),
                        "{o:?} in {l:?}: {example} should be refused at {field} with {says:?}, got {message:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_examples_refuse_only_what_they_show() {
        // Without the combination, the same authorities load: a refusal
        // is about the combination, not a broken example.
        for ok in [
            "{key: {data: KEY}}",
            "{key: {data: KEY}, signatureFormat: bundle}",
            "{key: {data: KEY, hashAlgorithm: sha512}}",
            "{keyless: KEYLESS, source: [{githubAttestations: {owner: acme}}]}",
            "{keyless: KEYLESS, signatureFormat: bundle, source: [{githubAttestations: {owner: acme}}]}",
            "{keyless: {ca-cert: {data: CERT}, identities: [{issuer: 'https://issuer.example', subject: 'a@example.com'}]}}",
            "{key: {data: KEY}, source: [{tagPrefix: 'sigs-'}]}",
            "{static: {action: pass}}",
            "{notation: NOTATION}",
        ] {
            assert_eq!(refusal_of(ok), "", "{ok}");
        }
    }

    #[test]
    fn the_table_names_every_cell_once() {
        let md = markdown();
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| `")).count(),
            AuthorityOption::ALL.len()
        );
        assert!(md.contains("✗1"));
        assert!(md.contains("promises::key_in_every_layout"));
    }
}
