//! What a message's text is searched by, and what a query looks for: one
//! tokenizer for both, so a query finds exactly what was indexed.
//!
//! Words (letters and digits, lower-cased) are terms. Korean, Japanese and
//! Chinese are written without spaces between words, so their text gives
//! instead every pair of neighbouring characters: a query of two or more
//! such characters is the pairs it is made of, and finds every message
//! holding them. A single such character is no term.
//!
//! Each term is stored with its room in front (`lobby:hello`): a search
//! runs over one user's rooms, and a term common in the whole database
//! then reads only its matches in those rooms from the index. The
//! persister writes the vector as PostgreSQL's `tsvector` text (parsing
//! it costs a few microseconds, where building it in SQL cost a hundred);
//! the gateway writes the query as `tsquery` text.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Longest word kept, in characters: longer runs (a hash, a URL's
/// letters) are not what anyone searches for.
const MAX_WORD: usize = 64;
/// PostgreSQL keeps at most this many positions of one term.
const MAX_POSITIONS: usize = 256;
/// And no position above this.
const MAX_POSITION: usize = 16_383;

/// Hangul (jamo, compatibility jamo, syllables), kana, CJK ideographs.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'
        | '\u{3040}'..='\u{30FF}'
        | '\u{3130}'..='\u{318F}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{AC00}'..='\u{D7AF}'
        | '\u{F900}'..='\u{FAFF}')
}

/// The terms of `text` in order: its words, and the pairs of its CJK runs.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() && word.chars().count() <= MAX_WORD {
            out.push(std::mem::take(word));
        }
        word.clear();
    };
    let flush_run = |run: &mut Vec<char>, out: &mut Vec<String>| {
        out.extend(run.windows(2).map(|p| p.iter().collect()));
        run.clear();
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush_word(&mut word, &mut out);
            run.push(c);
        } else if c.is_alphanumeric() {
            flush_run(&mut run, &mut out);
            word.extend(c.to_lowercase());
        } else {
            flush_word(&mut word, &mut out);
            flush_run(&mut run, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_run(&mut run, &mut out);
    out
}

/// A message of `room` as `tsvector` text: each term with its room and
/// positions; empty (an empty vector, not NULL: the message has been
/// looked at) when the text has no term. Terms hold only letters and
/// digits and room ids no quote, so nothing needs escaping.
pub fn vector(room: &str, text: &str) -> String {
    let mut positions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, term) in terms(text).into_iter().enumerate() {
        let at = positions.entry(term).or_default();
        if at.len() < MAX_POSITIONS {
            at.push((i + 1).min(MAX_POSITION));
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    for (term, at) in positions {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "'{room}:{term}':");
        for (n, p) in at.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let _ = write!(out, "{p}");
        }
    }
    out
}

/// A query over `rooms` as `tsquery` text: every term of `q`, in any one
/// of the rooms. `None` when `q` has no term.
pub fn query(q: &str, rooms: &[String]) -> Option<String> {
    let mut wanted = terms(q);
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() || rooms.is_empty() {
        return None;
    }
    let per_room: Vec<String> = rooms
        .iter()
        .map(|room| {
            let all: Vec<String> = wanted.iter().map(|t| format!("'{room}:{t}'")).collect();
            format!("({})", all.join(" & "))
        })
        .collect();
    Some(per_room.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lower_cased_and_cjk_runs_give_their_pairs() {
        assert_eq!(
            terms("Hello, WORLD's 안녕하세요! x"),
            ["hello", "world", "s", "안녕", "녕하", "하세", "세요", "x"]
        );
        assert_eq!(
            terms("チャット世界abc"),
            ["チャ", "ャッ", "ット", "ト世", "世界", "abc"]
        );
        assert!(terms("안 ?! ").is_empty(), "one CJK character is no term");
        assert!(terms(&"a".repeat(65)).is_empty());
    }

    #[test]
    fn a_vector_keeps_positions_and_a_query_names_every_term_in_each_room() {
        assert_eq!(
            vector("lobby", "go go 안녕"),
            "'lobby:go':1,2 'lobby:안녕':3"
        );
        assert_eq!(vector("lobby", "?!"), "");
        let rooms = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            query("Hi 안녕", &rooms).as_deref(),
            Some("('a:hi' & 'a:안녕') | ('b:hi' & 'b:안녕')")
        );
        assert_eq!(query("안", &rooms), None);
        assert_eq!(query("hi", &[]), None);
    }
}
