//! docs/aws.md's IAM policy names exactly the actions the adapter calls.

use std::collections::BTreeSet;
use std::path::Path;

fn pascal(snake: &str) -> String {
    snake.split('_').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect()
}

/// The operations called in the adapter's source: `ec2("Op").<op>()`, `asg("Op").<op>()`
/// (Auto Scaling), `sts("Op").<op>()`, `ssm("Op").<op>()` and `quotas("Op").<op>()` (Service Quotas).
fn called() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut ops = BTreeSet::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let text: String = std::fs::read_to_string(entry.unwrap().path()).unwrap().split_whitespace().collect();
        for (client, service) in [
            ("ec2(\"", "ec2"),
            ("asg(\"", "autoscaling"),
            ("sts(\"", "sts"),
            ("ssm(\"", "ssm"),
            ("quotas(\"", "servicequotas"),
        ] {
            for (at, _) in text.match_indices(client) {
                let label_start = at + client.len();
                let Some(close) = text[label_start..].find("\").") else { continue };
                let label = &text[label_start..label_start + close];
                let rest = &text[label_start + close + 3..];
                let op: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                assert!(
                    rest[op.len()..].starts_with("()") && !op.is_empty(),
                    "a counted call without an operation: {label}"
                );
                assert_eq!(label, pascal(&op), "the call counter's label names the operation called");
                ops.insert(format!("{service}:{}", pascal(&op)));
            }
        }
    }
    ops
}

fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/aws.md")).unwrap();
    // The policy is the JSON block with a Statement list (other blocks are examples).
    let policy = doc
        .split("```json")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default())
        .find(|block| block.contains("\"Statement\""))
        .expect("docs/aws.md has the policy");
    let json: serde_json::Value = serde_json::from_str(policy).unwrap();
    let mut actions = BTreeSet::new();
    for statement in json["Statement"].as_array().unwrap() {
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                actions.insert(a.clone());
            }
            serde_json::Value::Array(list) => actions.extend(list.iter().map(|a| a.as_str().unwrap().to_owned())),
            _ => panic!("Action must be a string or a list"),
        }
    }
    actions
}

#[test]
fn the_documented_policy_lists_exactly_the_calls_ohf_makes() {
    let called = called();
    assert!(called.contains("ec2:RunInstances") && called.contains("ec2:DescribeInstances"), "{called:?}");
    let documented = documented();
    let missing: Vec<_> = called.difference(&documented).collect();
    assert!(missing.is_empty(), "docs/aws.md lacks {missing:?}");
    // Beyond the calls: passing the instance and fleet roles, and the role Auto Scaling
    // needs the first time it is used in an account.
    let extra: BTreeSet<_> = documented.difference(&called).cloned().collect();
    let expected: BTreeSet<String> = ["iam:PassRole".to_owned(), "iam:CreateServiceLinkedRole".to_owned()].into();
    assert_eq!(extra, expected, "docs/aws.md names actions ohf does not need");
}
