//! Input checks of the contract. Each returns the contract's error so the
//! gateway can answer with it unchanged; nothing is published before every
//! check has passed.

use crate::protocol::{ApiError, Attachment};

pub const MAX_ROOM_ID: usize = 64;
pub const MAX_TEXT_CHARS: usize = 4_000;
pub const MAX_ATTACHMENTS: usize = 10;
pub const MAX_URL_CHARS: usize = 2_048;
pub const MAX_ATTACHMENT_NAME_CHARS: usize = 255;
pub const MAX_MIME_CHARS: usize = 127;
pub const MAX_ATTACHMENT_SIZE: u64 = 1 << 53;
pub const MAX_CLIENT_ID_CHARS: usize = 64;
pub const MAX_REF_CHARS: usize = 64;
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_DELIVER_AFTER_S: u64 = 604_800;
pub const DEFAULT_HISTORY_LIMIT: i64 = 50;
pub const MAX_HISTORY_LIMIT: i64 = 100;

/// `^[A-Za-z0-9_-]{1,64}$`: also what keeps a room id a safe NATS subject
/// token (no dots, wildcards or spaces).
pub fn room_id(room: &str) -> Result<(), ApiError> {
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM_ID
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "room ids are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
        ))
    }
}

/// Message text: 1–4,000 Unicode scalar values, no U+0000 (PostgreSQL text
/// cannot hold it).
pub fn text(text: &str) -> Result<(), ApiError> {
    if text.is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    if text.contains('\0') {
        return Err(ApiError::bad_request("text must not contain U+0000"));
    }
    // Cheap first: a string of at most 4,000 bytes has at most 4,000 chars.
    if text.len() > MAX_TEXT_CHARS && text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::too_large("text is longer than 4,000 characters"));
    }
    Ok(())
}

/// Longest emoji of a reaction, in Unicode scalar values (a flag, a family
/// or a skin tone is several).
const MAX_EMOJI_CHARS: usize = 32;

/// A reaction's emoji: 1-32 characters, no white space or control
/// characters (so it shows as one thing, and keys one reaction).
///
/// # Errors
/// `bad_request`.
pub fn emoji(emoji: &str) -> Result<(), ApiError> {
    let n = emoji.chars().count();
    if n == 0 || n > MAX_EMOJI_CHARS {
        return Err(ApiError::bad_request("emoji must be 1-32 characters"));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::bad_request(
            "emoji must not contain white space or control characters",
        ));
    }
    Ok(())
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain U+0000"
        )));
    }
    if value.len() > max && value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

/// At most 10 attachments, each with bounded url, name and type.
pub fn attachments(list: &[Attachment]) -> Result<(), ApiError> {
    if list.len() > MAX_ATTACHMENTS {
        return Err(ApiError::bad_request("at most 10 attachments"));
    }
    for a in list {
        bounded("attachment url", &a.url, MAX_URL_CHARS)?;
        bounded("attachment name", &a.name, MAX_ATTACHMENT_NAME_CHARS)?;
        bounded("attachment type", &a.mime, MAX_MIME_CHARS)?;
        if a.url.is_empty() {
            return Err(ApiError::bad_request("attachment url must not be empty"));
        }
        if !is_mime_type(&a.mime) {
            return Err(ApiError::bad_request(
                "attachment type must be a MIME type such as image/png",
            ));
        }
        if a.size > MAX_ATTACHMENT_SIZE {
            return Err(ApiError::bad_request("attachment size is over 2^53 bytes"));
        }
    }
    Ok(())
}

/// `type/subtype`, each part a token of visible ASCII without separators.
pub fn is_mime_type(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    match s.split_once('/') {
        Some((kind, sub)) => token(kind) && token(sub),
        None => false,
    }
}

pub fn client_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_request("client_id must not be empty"));
    }
    bounded("client_id", id, MAX_CLIENT_ID_CHARS)
}

pub fn reference(r: &str) -> Result<(), ApiError> {
    bounded("ref", r, MAX_REF_CHARS)
}

pub fn deliver_after(secs: u64) -> Result<(), ApiError> {
    if (1..=MAX_DELIVER_AFTER_S).contains(&secs) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "deliver_after_s must be 1 to 604,800 seconds",
        ))
    }
}

/// A display name trimmed, 1–64 characters.
pub fn display_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must not contain control characters",
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad_request("name is longer than 64 characters"));
    }
    Ok(name.to_owned())
}

/// Longest `avatar_url`.
pub const MAX_AVATAR_URL_CHARS: usize = 2_048;

/// A picture's address: an `https:` or `http:` URL of at most 2,048
/// characters, without spaces or control characters.
///
/// # Errors
/// `bad_request` otherwise.
pub fn avatar_url(url: &str) -> Result<(), ApiError> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    if !scheme_ok || rest.is_empty() {
        return Err(ApiError::bad_request("avatar_url must be an http(s) URL"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::bad_request("avatar_url must not contain spaces"));
    }
    if url.chars().count() > MAX_AVATAR_URL_CHARS {
        return Err(ApiError::bad_request(
            "avatar_url is longer than 2,048 characters",
        ));
    }
    Ok(())
}

/// Out-of-range limits are clamped, as the contract says.
pub fn history_limit(limit: Option<i64>) -> i64 {
    limit
        .unwrap_or(DEFAULT_HISTORY_LIMIT)
        .clamp(1, MAX_HISTORY_LIMIT)
}

/// Reads a request's JSON object (a REST body, a frame's `data`) as `T`.
/// Anything but an object is refused, also where serde would read a struct
/// from an array by position; `what` names it in the message. serde's
/// message names the field and the type it expected, never anything
/// internal.
///
/// # Errors
/// `bad_request`.
pub fn json_object<T: serde::de::DeserializeOwned>(text: &[u8], what: &str) -> Result<T, ApiError> {
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::bad_request(format!(
            "bad {what}: a JSON object is expected"
        )));
    }
    serde_json::from_slice(text).map_err(|err| {
        let msg = err.to_string();
        let msg = msg.split(" at line").next().unwrap_or(&msg);
        ApiError::bad_request(format!("bad {what}: {msg}"))
    })
}

#[cfg(test)]
mod emoji_tests {
    use super::*;

    #[test]
    fn an_emoji_is_one_to_32_characters_without_spaces() {
        for ok in ["👍", "🇰🇷", "👨‍👩‍👧‍👦", "+1", ":party:", &"x".repeat(32)]
        {
            assert!(emoji(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "👍 👍", "a\nb", "\0", &"x".repeat(33)] {
            assert_eq!(
                emoji(bad).unwrap_err().code,
                crate::protocol::ErrorCode::BadRequest,
                "{bad:?}"
            );
        }
    }
}

#[cfg(test)]
mod object_tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Named {
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn only_an_object_reads_as_a_request() {
        assert_eq!(
            json_object::<Named>(br#" {"name":"a"}"#, "body")
                .unwrap()
                .name
                .as_deref(),
            Some("a")
        );
        for bad in [&b"[]"[..], b"[\"a\"]", b"null", b"1", b"\"x\"", b"", b"{"] {
            let err = json_object::<Named>(bad, "body").unwrap_err();
            assert!(err.message.starts_with("bad body"), "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn room_ids_follow_the_contract_pattern() {
        for ok in ["lobby", "a", "A-z_09", &"r".repeat(64)] {
            assert!(room_id(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "a.b", "a*", "a>", "a b", "é", &"r".repeat(65), "a\0"] {
            assert_eq!(
                room_id(bad).unwrap_err().code,
                ErrorCode::BadRequest,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn text_length_counts_scalar_values_not_bytes() {
        assert!(text(&"é".repeat(4_000)).is_ok());
        assert!(text(&"😀".repeat(4_000)).is_ok());
        assert_eq!(
            text(&"a".repeat(4_001)).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(text("").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(text("a\0b").unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn attachments_are_bounded_and_typed() {
        let a = Attachment {
            url: "https://example.com/a.png".into(),
            name: "a.png".into(),
            mime: "image/png".into(),
            size: 10,
        };
        assert!(attachments(std::slice::from_ref(&a)).is_ok());
        assert!(attachments(&vec![a.clone(); 11]).is_err());
        let mut big = a.clone();
        big.size = (1 << 53) + 1;
        assert!(attachments(&[big]).is_err());
        let mut bad_mime = a.clone();
        bad_mime.mime = "png".into();
        assert!(attachments(&[bad_mime]).is_err());
        let mut long_url = a;
        long_url.url = "u".repeat(2_049);
        assert!(attachments(&[long_url]).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  Ann  ").unwrap(), "Ann");
        assert!(display_name("   ").is_err());
        assert!(display_name(&"n".repeat(65)).is_err());
        assert!(display_name(&"n".repeat(64)).is_ok());
    }

    #[test]
    fn history_limits_are_clamped() {
        assert_eq!(history_limit(None), 50);
        assert_eq!(history_limit(Some(0)), 1);
        assert_eq!(history_limit(Some(-5)), 1);
        assert_eq!(history_limit(Some(1_000)), 100);
        assert_eq!(history_limit(Some(7)), 7);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::protocol::{Envelope, ErrorCode};
    use proptest::prelude::*;

    fn contract_room(s: &str) -> bool {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    proptest! {
        #[test]
        fn room_ids_are_accepted_exactly_when_they_match_the_contract(s in "[A-Za-z0-9_-]{0,70}|\\PC{0,80}") {
            prop_assert_eq!(room_id(&s).is_ok(), contract_room(&s));
        }

        #[test]
        fn accepted_room_ids_are_single_subject_tokens(s in "[A-Za-z0-9_.*> -]{1,70}") {
            if room_id(&s).is_ok() {
                prop_assert!(!s.contains(['.', '*', '>', ' ']));
            }
        }

        #[test]
        fn text_is_refused_exactly_when_empty_too_long_or_holding_nul(s in "\\PC{0,20}", n in 0usize..4_100, nul in any::<bool>()) {
            let mut text: String = s.chars().cycle().take(n).collect();
            if nul { text.push('\0'); }
            let chars = text.chars().count();
            let expected = if text.is_empty() || text.contains('\0') {
                Some(ErrorCode::BadRequest)
            } else if chars > MAX_TEXT_CHARS {
                Some(ErrorCode::TooLarge)
            } else {
                None
            };
            prop_assert_eq!(super::text(&text).err().map(|e| e.code), expected);
        }

        #[test]
        fn any_frame_text_parses_or_fails_without_panicking(s in "\\PC{0,200}") {
            let _ = serde_json::from_str::<Envelope<'_>>(&s);
        }

        #[test]
        fn any_json_object_frame_keeps_its_type_and_ref(kind in "[a-z:]{0,20}", reference in "[A-Za-z0-9-]{0,70}") {
            let frame = serde_json::json!({"type": kind, "ref": reference, "data": {"x": 1}}).to_string();
            let env: Envelope<'_> = serde_json::from_str(&frame).unwrap();
            prop_assert_eq!(env.kind().ok(), Some(kind.as_str()));
            prop_assert_eq!(env.reference(), Some(reference.as_str()));
            prop_assert_eq!(super::reference(&reference).is_ok(), reference.len() <= MAX_REF_CHARS);
        }

        #[test]
        fn display_names_are_trimmed_and_bounded(s in "\\PC{0,80}") {
            match display_name(&s) {
                Ok(name) => {
                    prop_assert_eq!(name.as_str(), s.trim());
                    prop_assert!((1..=64).contains(&name.chars().count()));
                }
                Err(e) => prop_assert_eq!(e.code, ErrorCode::BadRequest),
            }
        }

        #[test]
        fn history_limits_always_land_in_range(limit in proptest::option::of(any::<i64>())) {
            prop_assert!((1..=100).contains(&history_limit(limit)));
        }
    }
}
