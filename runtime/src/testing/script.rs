//! What the testing host answers: scripted subflow outcomes, matched by flow and input.

use serde_json::Value;

use crate::error::FlowError;

/// How a scripted subflow ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// It returns this output.
    Output(Value),
    /// It fails (or is rejected, or times out) with this error.
    Error(FlowError),
}

/// One scripted subflow: calls to `flow` (with `input`, when given) get `response`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The subflow's name.
    pub flow: String,
    /// Only calls with exactly this input, when set.
    pub input: Option<Value>,
    /// The answer.
    pub response: Response,
}

impl Rule {
    /// Calls to `flow`, with any input, return `null` until told otherwise.
    pub fn subflow(flow: &str) -> Self {
        Rule {
            flow: flow.into(),
            input: None,
            response: Response::Output(Value::Null),
        }
    }

    /// Only calls with exactly this input.
    pub fn with_input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    /// The subflow returns `output`.
    pub fn returns(mut self, output: Value) -> Self {
        self.response = Response::Output(output);
        self
    }

    /// The subflow ends with `error`.
    pub fn fails_with(mut self, error: FlowError) -> Self {
        self.response = Response::Error(error);
        self
    }
}

/// The rules of one test; the first rule that matches a call answers it.
#[derive(Debug, Clone, Default)]
pub struct Script {
    rules: Vec<Rule>,
}

impl Script {
    /// Add a rule; earlier rules win.
    pub fn push(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// The answer to a subflow call, or `None` when no rule covers it.
    pub fn answer(&self, flow: &str, input: &Value) -> Option<&Response> {
        self.rules
            .iter()
            .find(|r| r.flow == flow && r.input.as_ref().is_none_or(|want| want == input))
            .map(|r| &r.response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_matching_rule_answers() {
        let mut s = Script::default();
        s.push(
            Rule::subflow("price")
                .with_input(json!({ "sku": 1 }))
                .returns(json!(10)),
        );
        s.push(Rule::subflow("price").returns(json!(99)));
        assert_eq!(
            s.answer("price", &json!({ "sku": 1 })),
            Some(&Response::Output(json!(10)))
        );
        assert_eq!(
            s.answer("price", &json!({ "sku": 2 })),
            Some(&Response::Output(json!(99)))
        );
        assert_eq!(s.answer("stock", &json!({})), None);
    }
}
