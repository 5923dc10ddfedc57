//! What the testing host answers: scripted subflow outcomes, matched by flow and input;
//! what counterparties send; the events that arrive on topics.

use serde_json::Value;

use crate::model::FlowError;

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

/// The rules of one test (the first rule that matches a call answers it), and what the
/// flow's counterparties and topics hold for it.
#[derive(Debug, Clone, Default)]
pub struct Script {
    rules: Vec<Rule>,
    /// What each counterparty sends, in order: a message, or the end of its flow (`Err`).
    pub messages: Vec<(String, Result<Value, String>)>,
    /// The events that arrive, in order, by topic.
    pub events: Vec<(String, Value)>,
    /// The party whose session started the flow, when it runs as a responder.
    pub initiator: Option<String>,
}

impl Script {
    /// Add a rule; earlier rules win.
    pub fn push(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// Counterparty `party` sends `payload` (after what it was scripted to send before).
    pub fn message(&mut self, party: &str, payload: Value) {
        self.messages.push((party.into(), Ok(payload)));
    }

    /// Counterparty `party`'s flow ends: a `receive` past its messages fails with `why`.
    pub fn counterparty_ends(&mut self, party: &str, why: &str) {
        self.messages.push((party.into(), Err(why.into())));
    }

    /// An event with `payload` arrives on `topic` (after those scripted before).
    pub fn event(&mut self, topic: &str, payload: Value) {
        self.events.push((topic.into(), payload));
    }

    /// The flow runs as the responder to a session opened by `party`.
    pub fn initiated_by(&mut self, party: &str) {
        self.initiator = Some(party.into());
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
