//! Turning committed outcomes into events on core NATS: on the room's
//! subject for its members, and on a user's subject when that user's
//! gateways must learn of a membership change.

use async_nats::Client;
use shared::events::RoomEvent;
use shared::protocol::{event, Deleted, Persisted, ReactionsEvent, RoomMember, RoomRole};
use shared::subjects::Subjects;
use uuid::Uuid;

use crate::apply::Outcome;

/// The events of one outcome: the room's, and one for a user's own
/// subject if any.
///
/// A membership or role event on the room's subject skips the member it is
/// about: that member hears of it on their own subject (an invitee, a new
/// admin) or from the ack (a joiner), exactly once either way.
/// `None` for an outcome only webhooks are told of.
pub fn events_of(outcome: &Outcome) -> Option<(RoomEvent, Option<(Uuid, RoomEvent)>)> {
    Some(match outcome {
        Outcome::Persisted(message) | Outcome::Retold(message) => {
            let mut ev = RoomEvent::new(
                event::MESSAGE_PERSISTED,
                &message.room,
                Persisted {
                    temp_id: message.temp_id,
                    message,
                },
            );
            ev.temp_id = Some(message.temp_id);
            ev.seq = Some(message.seq);
            ev.repeat = matches!(outcome, Outcome::Retold(_));
            (ev, None)
        }
        Outcome::Joined {
            room,
            user,
            by_self,
            big,
            ..
        } => {
            // The user's gateways add the room to the user's connections;
            // a joiner's connections learnt it from the ack.
            let ev =
                RoomEvent::new(event::ROOM_JOINED, room, RoomMember { room, user }).about(user.id);
            about_member(ev, user.id, *by_self, *big)
        }
        Outcome::Left {
            room,
            user,
            by_self,
            big,
            ..
        } => {
            // One who left learnt it from the ack; one taken out hears it.
            let ev =
                RoomEvent::new(event::ROOM_LEFT, room, RoomMember { room, user }).about(user.id);
            about_member(ev, user.id, *by_self, *big)
        }
        Outcome::RoleChanged { room, user, role } => {
            // The member it is about hears of it on their own subject, as
            // of a membership: they may be subscribed to the room only
            // since a moment ago (an invitation in the same batch).
            let ev = RoomEvent::new(
                event::ROOM_ROLE,
                room,
                RoomRole {
                    room,
                    user,
                    role: *role,
                },
            );
            (ev.clone().skipping(user.id), Some((user.id, ev)))
        }
        Outcome::Edited(message) => (
            RoomEvent::new(
                event::MESSAGE_EDITED,
                &message.room,
                serde_json::json!({ "message": message }),
            ),
            None,
        ),
        Outcome::Reactions {
            room,
            message_id,
            reactions,
        } => (
            RoomEvent::new(
                event::MESSAGE_REACTIONS,
                room,
                ReactionsEvent {
                    room,
                    message_id: *message_id,
                    reactions,
                },
            ),
            None,
        ),
        Outcome::Deleted(message) => (
            RoomEvent::new(
                event::MESSAGE_DELETED,
                &message.room,
                Deleted {
                    room: &message.room,
                    id: message.id,
                },
            ),
            None,
        ),
        Outcome::Flagged { .. } => return None,
    })
}

/// A membership event for the room (skipping the member it is about) and
/// for the member's own subject: they hear it there unless they did it
/// themselves, and so know it from their ack. In a big room the room's copy
/// is quiet: gateways apply it in order with the room's messages, and no
/// member is told.
fn about_member(
    ev: RoomEvent,
    user: Uuid,
    by_self: bool,
    big: bool,
) -> (RoomEvent, Option<(Uuid, RoomEvent)>) {
    let own = if by_self {
        ev.clone().skipping(user)
    } else {
        ev.clone()
    };
    let room = if big { ev.quiet() } else { ev };
    (room.skipping(user), Some((user, own)))
}

/// Publishes the events of a committed batch, in order, and flushes them.
///
/// # Errors
/// When NATS does not take them; the batch is then not acked and its
/// redelivery finds the rows already written.
pub async fn publish(
    client: &Client,
    subjects: &Subjects,
    outcomes: &[Outcome],
) -> anyhow::Result<()> {
    for (event, own) in outcomes
        .iter()
        .filter(|o| o.for_gateways())
        .filter_map(events_of)
    {
        let room = event.room.as_deref().unwrap_or_default();
        client
            .publish_with_headers(subjects.room_events(room), event.headers(), event.frame)
            .await?;
        if let Some((user, event)) = own {
            client
                .publish_with_headers(subjects.user_events(&user), event.headers(), event.frame)
                .await?;
        }
    }
    client.flush().await?;
    Ok(())
}
