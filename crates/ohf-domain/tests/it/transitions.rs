use ohf_domain::RequestState::{self, *};

#[test]
fn only_the_legal_transitions_are_allowed() {
    let legal = [
        (Pending, InProgress),
        (Pending, Failed),
        (Pending, Timeout),
        (Pending, Cancelled),
        (InProgress, Completed),
        (InProgress, Failed),
        (InProgress, Timeout),
        (InProgress, Cancelled),
        (InProgress, PartialSuccess),
    ];
    for from in RequestState::ALL {
        for to in RequestState::ALL {
            assert_eq!(from.can_become(to), legal.contains(&(from, to)), "{from} -> {to}");
        }
    }
}

#[test]
fn terminal_states_are_final() {
    for s in [Completed, Failed, Timeout, Cancelled, PartialSuccess] {
        assert!(s.is_terminal());
        assert!(RequestState::ALL.iter().all(|to| !s.can_become(*to)));
    }
    assert!(!Pending.is_terminal() && !InProgress.is_terminal());
}

#[test]
fn states_have_the_seed_names() {
    assert_eq!(serde_json::to_string(&PartialSuccess).unwrap(), "\"PARTIAL_SUCCESS\"");
    assert_eq!(serde_json::from_str::<RequestState>("\"PARTIAL\"").unwrap(), PartialSuccess);
    assert_eq!(RequestState::parse("in_progress"), Some(InProgress));
    assert_eq!(RequestState::parse("done"), None);
}
