use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn limits() -> Limits {
    Limits {
        min_session: Duration::from_millis(100),
        max_session: Duration::from_secs(300),
        initial_delay: Duration::from_secs(3),
        max_members: 3,
        max_metadata_bytes: 1024,
    }
}

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|name| Protocol {
                name: name.to_string(),
                metadata: name.as_bytes().to_vec(),
            })
            .collect(),
        version: 9,
    }
}

fn now_answer<T: std::fmt::Debug>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(answer) => answer,
        Reply::Later(_) => panic!("expected an answer now"),
    }
}

fn later<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Later(rx) => rx,
        Reply::Now(_) => panic!("expected to wait"),
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED, then the parked join.
fn join_new(
    g: &mut Group,
    protocols: &[&str],
    now: Instant,
) -> (String, oneshot::Receiver<JoinAnswer>) {
    let first = now_answer(g.join(request("", protocols), now, &limits()));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    let id = first.member_id.clone();
    let rx = later(g.join(request(&id, protocols), now, &limits()));
    (id, rx)
}

/// Two members through a first rebalance: (leader, follower, t).
fn stable_pair(g: &mut Group, t0: Instant) -> (String, String, Instant) {
    let (a, mut ja) = join_new(g, &["range"], t0);
    let (b, mut jb) = join_new(g, &["range", "roundrobin"], t0 + SECOND);
    // The initial delay (3 s) runs from the last new member.
    g.tick(t0 + 3 * SECOND, &limits());
    assert!(ja.try_recv().is_err(), "still in the initial delay");
    let t = t0 + 4 * SECOND;
    g.tick(t, &limits());
    let (ja, jb) = (ja.try_recv().unwrap(), jb.try_recv().unwrap());
    assert_eq!((ja.generation, jb.generation), (1, 1));
    assert_eq!(ja.leader, a);
    assert_eq!(ja.protocol.as_deref(), Some("range"));
    assert_eq!(ja.members.len(), 2, "the leader gets every member");
    assert!(jb.members.is_empty());
    let mut follower = later(g.sync(&b, 1, None, None, None, vec![], t).reply);
    let leader = g.sync(
        &a,
        1,
        None,
        Some("consumer"),
        Some("range"),
        vec![(a.clone(), vec![1]), (b.clone(), vec![2])],
        t,
    );
    let (generation, _record) = leader.persist.expect("the leader's assignments are stored");
    let mut leader = later(leader.reply);
    assert!(follower.try_recv().is_err(), "not before they are stored");
    g.persisted(generation, true, t, &limits());
    assert_eq!(leader.try_recv().unwrap().assignment, vec![1]);
    assert_eq!(follower.try_recv().unwrap().assignment, vec![2]);
    assert_eq!(g.state(), State::Stable);
    (a, b, t)
}

#[test]
fn a_new_group_forms_after_the_initial_delay_and_hands_out_stored_assignments() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b, t) = stable_pair(&mut g, t0);
    assert_eq!(g.heartbeat(&a, 1, None, t), None);
    assert_eq!(
        g.heartbeat(&b, 0, None, t),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat("stranger", 1, None, t),
        Some(ResponseError::UnknownMemberId)
    );
    // A Stable SyncGroup answers at once with the stored assignment.
    let again = now_answer(g.sync(&b, 1, None, None, None, vec![], t).reply);
    assert_eq!(again.assignment, vec![2]);
}

#[test]
fn a_silent_member_leaves_after_its_session_and_the_rest_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b, t) = stable_pair(&mut g, t0);
    // Only a heartbeats.
    let mut at = t;
    for _ in 0..9 {
        at += SECOND;
        assert_eq!(g.heartbeat(&a, 1, None, at), None);
        g.tick(at, &limits());
    }
    at += 2 * SECOND;
    g.tick(at, &limits());
    assert_eq!(g.member_count(), 1, "b's 10 s session expired");
    assert_eq!(
        g.heartbeat(&a, 1, None, at),
        Some(ResponseError::RebalanceInProgress)
    );
    let mut rejoin = later(g.join(request(&a, &["range"]), at, &limits()));
    let answer = rejoin
        .try_recv()
        .expect("the only member rejoined: no delay");
    assert_eq!(answer.generation, 2);
    assert_eq!(answer.members.len(), 1);
    assert_eq!(
        g.heartbeat(&b, 1, None, at),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_member_that_does_not_rejoin_in_time_is_left_out() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b, t) = stable_pair(&mut g, t0);
    // A third member joins: everyone must rejoin within the rebalance timeout.
    let (_c, mut jc) = join_new(&mut g, &["range"], t);
    let mut ja = later(g.join(request(&a, &["range"]), t, &limits()));
    // b keeps heartbeating (told to rejoin) but never does.
    for s in 1..30 {
        let at = t + s * SECOND;
        assert_eq!(
            g.heartbeat(&b, 1, None, at),
            Some(ResponseError::RebalanceInProgress)
        );
        g.tick(at, &limits());
        assert!(ja.try_recv().is_err());
    }
    g.tick(t + 30 * SECOND, &limits());
    let (ja, jc) = (ja.try_recv().unwrap(), jc.try_recv().unwrap());
    assert_eq!((ja.generation, jc.generation), (2, 2));
    assert_eq!(ja.members.len(), 2, "b was left out");
    assert_eq!(
        g.heartbeat(&b, 2, None, t + 31 * SECOND),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn the_last_member_leaving_empties_the_group_and_stores_it() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b, t) = stable_pair(&mut g, t0);
    assert_eq!(g.take_unsaved(), None);
    let answers = g.leave(&[(a.clone(), None), ("nobody".into(), None)], t, &limits());
    assert_eq!(answers, vec![None, Some(ResponseError::UnknownMemberId)]);
    assert_eq!(g.state(), State::PreparingRebalance);
    assert_eq!(g.leave(&[(b, None)], t, &limits()), vec![None]);
    assert_eq!(g.state(), State::Empty);
    assert_eq!(g.generation(), 2);
    match g.take_unsaved() {
        Some(GroupRecord::Membership { state, .. }) => {
            assert!(state.members.is_empty());
            assert_eq!(state.generation, 2);
        }
        other => panic!("{other:?}"),
    }
    // Anyone may commit to an empty group from outside the protocol.
    assert_eq!(g.check_commit("", -1, None, t), Ok(()));
}

#[test]
fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let static_join = |id: &str| JoinRequest {
        instance_id: Some("instance-b".into()),
        ..request(id, &["range"])
    };
    let mut ja = later(
        g.join(request("", &["range"]), t0, &limits())
            .pipe_id(&mut g, t0),
    );
    let mut jb = later(g.join(static_join(""), t0, &limits()));
    g.tick(t0 + 4 * SECOND, &limits());
    let a = ja.try_recv().unwrap();
    let b = jb.try_recv().unwrap();
    assert!(b.member_id.starts_with("instance-b-"));
    let t = t0 + 4 * SECOND;
    let leader = g.sync(
        &a.member_id,
        1,
        None,
        None,
        None,
        vec![(b.member_id.clone(), vec![7])],
        t,
    );
    g.persisted(leader.persist.unwrap().0, true, t, &limits());
    // b restarts: same instance id, no member id.
    let back = now_answer(g.join(static_join(""), t, &limits()));
    assert_eq!(back.error, None);
    assert_eq!(back.generation, 1, "no rebalance");
    assert_ne!(back.member_id, b.member_id);
    assert_eq!(g.state(), State::Stable);
    assert!(g.take_unsaved().is_some(), "the new member id is stored");
    let sync = now_answer(
        g.sync(
            &back.member_id,
            1,
            Some("instance-b"),
            None,
            None,
            vec![],
            t,
        )
        .reply,
    );
    assert_eq!(sync.assignment, vec![7]);
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(&b.member_id, 1, Some("instance-b"), t),
        Some(ResponseError::FencedInstanceId)
    );
}

trait PipeId {
    fn pipe_id(self, g: &mut Group, now: Instant) -> Reply<JoinAnswer>;
}

impl PipeId for Reply<JoinAnswer> {
    /// Follows MEMBER_ID_REQUIRED with the rejoin.
    fn pipe_id(self, g: &mut Group, now: Instant) -> Reply<JoinAnswer> {
        let first = now_answer(self);
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        g.join(request(&first.member_id, &["range"]), now, &limits())
    }
}

#[test]
fn bad_joins_are_refused_with_kafkas_errors() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, _b, t) = stable_pair(&mut g, t0);
    let error = |g: &mut Group, r: JoinRequest| now_answer(g.join(r, t, &limits())).error;
    let short = JoinRequest {
        session_timeout: Duration::from_millis(1),
        ..request("", &["range"])
    };
    assert_eq!(
        error(&mut g, short),
        Some(ResponseError::InvalidSessionTimeout)
    );
    assert_eq!(
        error(&mut g, request("", &["sticky"])),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let other_type = JoinRequest {
        protocol_type: "connect".into(),
        ..request("", &["range"])
    };
    assert_eq!(
        error(&mut g, other_type),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(
        error(&mut g, request("made-up", &["range"])),
        Some(ResponseError::UnknownMemberId)
    );
    let huge = JoinRequest {
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: vec![0; 2048],
        }],
        ..request("", &["range"])
    };
    assert_eq!(error(&mut g, huge), Some(ResponseError::InvalidRequest));
    // Group size: 2 members + 1 pending id reach the limit of 3.
    assert_eq!(
        error(&mut g, request("", &["range"])),
        Some(ResponseError::MemberIdRequired)
    );
    assert_eq!(
        error(&mut g, request("", &["range"])),
        Some(ResponseError::GroupMaxSizeReached)
    );
    // Commits: members of the current generation only.
    assert_eq!(g.check_commit(&a, 1, None, t), Ok(()));
    assert_eq!(
        g.check_commit(&a, 0, None, t),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit("", -1, None, t),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit("x", 1, None, t),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_coordinator_taking_over_loads_the_stored_group_as_stable() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b, t) = stable_pair(&mut g, t0);
    let stored = g.membership();
    let mut loaded = Group::load("g", &stored, t + 60 * SECOND);
    assert_eq!(loaded.state(), State::Stable);
    assert_eq!(loaded.generation(), 1);
    // Sessions start again at the load.
    assert_eq!(loaded.heartbeat(&a, 1, None, t + 61 * SECOND), None);
    let sync = now_answer(
        loaded
            .sync(&b, 1, None, None, None, vec![], t + 61 * SECOND)
            .reply,
    );
    assert_eq!(sync.assignment, vec![2]);
    assert_eq!(
        Group::load("e", &Membership::default(), t).state(),
        State::Empty
    );
}

#[test]
fn a_failed_store_fails_the_waiting_syncs_and_rebalances() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, mut ja) = join_new(&mut g, &["range"], t0);
    let t = t0 + 4 * SECOND;
    g.tick(t, &limits());
    assert_eq!(ja.try_recv().unwrap().leader, a);
    let outcome = g.sync(&a, 1, None, None, None, vec![], t);
    let mut rx = later(outcome.reply);
    g.persisted(1, false, t, &limits());
    assert_eq!(
        rx.try_recv().unwrap().error,
        Some(ResponseError::NotCoordinator)
    );
    assert_eq!(g.state(), State::PreparingRebalance);
}
