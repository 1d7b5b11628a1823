//! Policy programs over verified attestations and signatures: Rego (with
//! `regorus`) and CEL (with the `cel` crate). Compiled when the policy is
//! compiled, so a syntax error makes the policy invalid, naming the field;
//! evaluated under a time limit, so a program that does not finish is a
//! failure with that reason.
//!
//! Rego follows policy-controller's convention: `package sigstore`, the rule
//! `isCompliant` must be `true`, and the input is the whole in-toto
//! Statement (or, for `spec.policy`, the authority matches). Rego v0 syntax
//! (`isCompliant { … }` without `if`) is accepted, as policy-controller's
//! policies are written in it. When the program defines a string rule
//! `errorMsg`, a failure reports it.
//!
//! CEL (sigil's) sees `statement` (the whole Statement) and `predicate` (its
//! predicate); for `spec.policy`, `authorityMatches`. The expression must
//! evaluate to `true`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::program_pool::{PoolError, ProgramPool};

/// Default evaluation time limit.
pub use crate::limits::DEFAULT_PROGRAM_TIMEOUT as DEFAULT_TIMEOUT;

/// Why a program did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// The program ran and said no, or could not run over this input:
    /// a fact about the evidence.
    #[error("{0}")]
    Failed(String),
    /// It did not finish within the limit (which, for CEL, counts the wait
    /// for a worker).
    #[error("policy did not finish within {}", crate::duration::human(*.0))]
    TimedOut(Duration),
    /// Every program worker was taken and the queue full.
    #[error("policy programs are overloaded: too many evaluations at once")]
    Busy,
}

impl ProgramError {
    /// True when the failure says more about the load than the evidence:
    /// such an outcome is denied but not remembered.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProgramError::TimedOut(_) | ProgramError::Busy)
    }
}

/// The language of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rego, evaluated by regorus.
    Rego,
    /// CEL.
    Cel,
}

/// A compiled policy program.
#[derive(Clone)]
pub struct Program {
    language: Language,
    /// The parsed Rego modules, cloned for each evaluation (parsing happens
    /// once, when the policy is compiled).
    rego: Option<Arc<std::sync::Mutex<regorus::Engine>>>,
    cel: Option<Arc<cel::Program>>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

const REGO_RULE: &str = "data.sigstore.isCompliant";
const REGO_MESSAGE: &str = "data.sigstore.errorMsg";

fn rego_engine(source: &str) -> Result<regorus::Engine, String> {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(true);
    engine
        .add_policy("policy.rego".into(), source.to_string())
        .map_err(|e| e.to_string())?;
    Ok(engine)
}

impl Program {
    /// Parses `source`; errors are syntax errors, said briefly.
    pub fn compile(language: Language, source: &str) -> Result<Self, String> {
        match language {
            Language::Rego => {
                let engine = rego_engine(source)?;
                // The rule must exist in package sigstore.
                let packages = engine.get_packages().map_err(|e| e.to_string())?;
                if !packages.iter().any(|p| p == "data.sigstore") {
                    return Err(
                        "the Rego program must be `package sigstore` (with a rule isCompliant)"
                            .into(),
                    );
                }
                Ok(Program {
                    language,
                    rego: Some(Arc::new(std::sync::Mutex::new(engine))),
                    cel: None,
                })
            }
            Language::Cel => {
                let program = cel::Program::compile(source).map_err(|e| e.to_string())?;
                Ok(Program {
                    language,
                    rego: None,
                    cel: Some(Arc::new(program)),
                })
            }
        }
    }

    /// The language.
    pub fn language(&self) -> Language {
        self.language
    }

    /// Evaluates over `input` (Rego's `input`; CEL's variables are the
    /// top-level fields of `input`). `Ok(())` when the program passes,
    /// otherwise why not.
    pub fn evaluate(&self, input: &Value, limit: Duration) -> Result<(), ProgramError> {
        match self.language {
            Language::Rego => self.evaluate_rego(input, limit),
            Language::Cel => self.evaluate_cel(input, limit),
        }
    }

    fn evaluate_rego(&self, input: &Value, limit: Duration) -> Result<(), ProgramError> {
        let failed = ProgramError::Failed;
        let Some(template) = &self.rego else {
            return Err(failed("Rego program missing".into()));
        };
        let mut engine = template.lock().unwrap_or_else(|e| e.into_inner()).clone();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit,
            check_interval: NonZeroU32::MIN,
        });
        let input =
            regorus::Value::from_json_str(&input.to_string()).map_err(|e| failed(e.to_string()))?;
        engine.set_input(input);
        let result = engine.eval_rule(REGO_RULE.into()).map_err(|e| {
            let text = e.to_string();
            if text.to_lowercase().contains("time limit")
                || text.to_lowercase().contains("timed out")
            {
                ProgramError::TimedOut(limit)
            } else {
                failed(format!("policy evaluation failed: {text}"))
            }
        })?;
        if result.as_bool().copied().unwrap_or(false) {
            return Ok(());
        }
        let message = engine
            .eval_rule(REGO_MESSAGE.into())
            .ok()
            .and_then(|v| v.as_string().ok().map(|s| s.to_string()))
            .filter(|s| !s.is_empty());
        Err(failed(
            message.unwrap_or_else(|| "isCompliant is not true".into()),
        ))
    }

    fn evaluate_cel(&self, input: &Value, limit: Duration) -> Result<(), ProgramError> {
        let Some(program) = self.cel.clone() else {
            return Err(ProgramError::Failed("CEL program missing".into()));
        };
        let input = input.clone();
        // cel has no budget of its own. CEL cannot loop, but a program can
        // still be expensive over a large input: it runs on the shared
        // worker pool and is given up on past the limit.
        let outcome = ProgramPool::shared().run(move || run_cel(&program, &input), limit);
        match outcome {
            Ok(result) => result.map_err(ProgramError::Failed),
            Err(PoolError::TimedOut) => Err(ProgramError::TimedOut(limit)),
            Err(PoolError::Busy) => {
                crate::metrics::global().program_overload();
                Err(ProgramError::Busy)
            }
            Err(PoolError::Crashed) => {
                Err(ProgramError::Failed("CEL evaluation crashed".to_string()))
            }
        }
    }
}

/// Runs `program` with the top-level fields of `input` as its variables.
fn run_cel(program: &cel::Program, input: &Value) -> Result<(), String> {
    let mut context = cel::Context::default();
    if let Value::Object(fields) = input {
        for (name, value) in fields {
            context
                .add_variable(name.as_str(), value.clone())
                .map_err(|e| format!("cannot bind {name}: {e}"))?;
        }
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(true)) => Ok(()),
        Ok(cel::Value::Bool(false)) => Err("CEL expression is false".to_string()),
        Ok(other) => Err(format!("CEL expression gave {other:?}, not a bool")),
        Err(e) => Err(format!("CEL evaluation failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rego_v0_policies_run_unchanged() {
        let p = Program::compile(
            Language::Rego,
            r#"package sigstore
default isCompliant = false
isCompliant {
  input.predicateType == "https://slsa.dev/provenance/v1"
  input.predicate.runDetails.builder.id == "https://ci.acme.test/builder"
}
errorMsg = "builder not allowed" { not isCompliant }
"#,
        )
        .unwrap();
        let good = json!({"predicateType": "https://slsa.dev/provenance/v1", "predicate": {"runDetails": {"builder": {"id": "https://ci.acme.test/builder"}}}});
        assert_eq!(p.evaluate(&good, DEFAULT_TIMEOUT), Ok(()));
        let bad = json!({"predicateType": "https://slsa.dev/provenance/v1", "predicate": {"runDetails": {"builder": {"id": "evil"}}}});
        assert_eq!(
            p.evaluate(&bad, DEFAULT_TIMEOUT),
            Err(ProgramError::Failed("builder not allowed".to_string()))
        );
    }

    #[test]
    fn rego_errors_and_wrong_package_are_compile_errors() {
        assert!(Program::compile(Language::Rego, "package sigstore\nisCompliant {").is_err());
        let e = Program::compile(Language::Rego, "package other\nisCompliant = true").unwrap_err();
        assert!(e.contains("package sigstore"), "{e}");
    }

    #[test]
    fn cel_sees_statement_and_predicate() {
        let p = Program::compile(
            Language::Cel,
            "predicate.scanner.result.summary.critical == 0 && statement.predicateType.startsWith('https://cosign')",
        )
        .unwrap();
        let input = |n: i64| json!({"statement": {"predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1"}, "predicate": {"scanner": {"result": {"summary": {"critical": n}}}}});
        assert_eq!(p.evaluate(&input(0), DEFAULT_TIMEOUT), Ok(()));
        assert_eq!(
            p.evaluate(&input(2), DEFAULT_TIMEOUT),
            Err(ProgramError::Failed("CEL expression is false".to_string()))
        );
        assert!(Program::compile(Language::Cel, "predicate. ==").is_err());
    }

    #[test]
    fn a_rego_policy_that_does_not_finish_fails_with_that_reason() {
        let p = Program::compile(
            Language::Rego,
            "package sigstore\nisCompliant { count([x | x := numbers.range(1, 100000000)[_]; x > 0]) > 0 }\n",
        )
        .unwrap();
        let e = p
            .evaluate(&json!({}), Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(e.to_string(), "policy did not finish within 50ms");
        assert!(e.is_transient());
    }
}
