//! Eventarc's path patterns, which audit-log triggers apply to `protoPayload.resourceName`.
//!
//! A pattern and a resource name are both split on `/` into segments, after one leading `/`
//! is removed from each, so `/projects/p` and `projects/p` are the same. Pattern segments
//! are:
//!
//! - `**`: zero or more whole segments, empty ones included. It may stand anywhere, more
//!   than once, as in `projects/_/buckets/**/r*.txt`.
//! - any other text: exactly one segment, where each `*` matches a run of zero or more
//!   characters other than `/`, and every other character matches itself, case included.
//!   So `obj*` matches `obj` and `object`, and `*.txt` matches `a.txt`.
//!
//! The edge cases below are sluice's choices, not documented Eventarc behaviour:
//!
//! - A segment pattern other than `**` never matches an empty segment, so `*` needs at least
//!   one character. The empty segments of `a//b` or of a trailing `/` match only `**`:
//!   `objects/*` does not match `objects/dir/`, but `objects/**` does.
//! - `**` next to other characters in one segment (`a**`, `**.txt`) is rejected, as are
//!   empty pattern segments (`a//b`, a trailing `/`) and the captures `{name}` and
//!   `{name=**}` of Firebase's patterns.
//! - `a/**` matches `a` itself, because `**` may match zero segments.
//!
//! [`PathPattern::matches`] evaluates a pattern directly. [`PathPattern::to_regex`]
//! translates it into an anchored regular expression with the same matches, which a Logging
//! filter can apply with `=~`. The tests check that the two agree. [`exact_regex`] gives
//! the regex of an exact match, for the attributes that a trigger matches exactly.

use std::fmt;

/// The regex of one `*` inside a segment: any run of characters other than `/`.
const IN_SEGMENT_WILDCARD: &str = "[^/]*";

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The pattern as written.
    text: String,
    segments: Vec<Segment>,
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more whole segments.
    AnySegments,
    /// Exactly one non-empty segment, in which each `*` matches zero or more characters.
    Glob(String),
}

/// The reason a path pattern is invalid. Each message quotes the pattern and gives the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathPatternError {
    /// The pattern is empty, or only `/`.
    #[error(
        "the path pattern is empty: write segments separated by '/', such as \
         \"projects/_/buckets/photos/objects/*.jpg\""
    )]
    Empty,
    /// Two slashes in a row, or a trailing slash.
    #[error(
        "path pattern {pattern:?} has an empty segment at position {position}: remove the \
         extra '/', or write \"**\" to match empty segments"
    )]
    EmptySegment {
        /// The pattern as written.
        pattern: String,
        /// The segment's 1-based position.
        position: usize,
    },
    /// `**` with other characters in one segment.
    #[error(
        "segment {segment:?} of path pattern {pattern:?} puts \"**\" beside other characters: \
         \"**\" must be a whole segment, and a single '*' matches part of a segment"
    )]
    PartialMultiSegmentWildcard {
        /// The pattern as written.
        pattern: String,
        /// The segment at fault.
        segment: String,
    },
    /// A `{` or `}`, as in Firebase's captures.
    #[error(
        "segment {segment:?} of path pattern {pattern:?} contains a capture brace, which \
         Eventarc's resource-name patterns do not take: write '*' for one segment or \"**\" \
         for any number of segments"
    )]
    Capture {
        /// The pattern as written.
        pattern: String,
        /// The segment at fault.
        segment: String,
    },
}

impl PathPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    ///
    /// Fails on an empty pattern, an empty segment, `**` beside other characters in a
    /// segment, and `{` or `}`.
    pub fn parse(text: &str) -> Result<Self, PathPatternError> {
        let body = text.strip_prefix('/').unwrap_or(text);
        if body.is_empty() {
            return Err(PathPatternError::Empty);
        }
        let mut segments = Vec::new();
        for (index, segment) in body.split('/').enumerate() {
            segments.push(parse_segment(text, segment, index + 1)?);
        }
        Ok(PathPattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// Returns the pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns whether the pattern has a wildcard. Without one it matches one name only,
    /// with or without a leading `/`.
    pub fn has_wildcards(&self) -> bool {
        self.segments.iter().any(|segment| match segment {
            Segment::AnySegments => true,
            Segment::Glob(glob) => glob.contains('*'),
        })
    }

    /// Returns whether `name` matches the pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_prefix('/').unwrap_or(name);
        let names: Vec<&str> = name.split('/').collect();
        match_segments(&self.segments, &names)
    }

    /// Translates the pattern into a regular expression, in the syntax of the `regex` crate
    /// and RE2, that matches a whole string exactly when [`PathPattern::matches`] does.
    ///
    /// The optional leading `/` of a name is `^/?`. It never lets a segment start at that
    /// slash, because no segment pattern but `**` matches an empty segment.
    pub fn to_regex(&self) -> String {
        let mut regex = String::from("^/?");
        // Whether a segment other than `**` has been written. Until then, a `**` is
        // deferred, because it must be written as a run of "segment/" before the first one.
        let mut wrote_segment = false;
        let mut leading_any = false;
        for segment in &self.segments {
            match segment {
                Segment::AnySegments if wrote_segment => regex.push_str("(?:/[^/]*)*"),
                Segment::AnySegments => leading_any = true,
                Segment::Glob(glob) => {
                    if wrote_segment {
                        regex.push('/');
                    } else if leading_any {
                        regex.push_str("(?:[^/]*/)*");
                    }
                    regex.push_str(&glob_regex(glob));
                    wrote_segment = true;
                }
            }
        }
        if !wrote_segment {
            // Only `**`: every string matches, line breaks included.
            return "^(?s:.*)$".to_owned();
        }
        regex.push('$');
        regex
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Returns an anchored regular expression that matches exactly `text`, for an exact match in
/// a Logging filter, whose `=` ignores case.
pub fn exact_regex(text: &str) -> String {
    format!("^{}$", regex::escape(text))
}

/// Parses the segment at 1-based `position` of `pattern`.
fn parse_segment(
    pattern: &str,
    segment: &str,
    position: usize,
) -> Result<Segment, PathPatternError> {
    if segment.is_empty() {
        return Err(PathPatternError::EmptySegment {
            pattern: pattern.to_owned(),
            position,
        });
    }
    if segment == "**" {
        return Ok(Segment::AnySegments);
    }
    if segment.contains("**") {
        return Err(PathPatternError::PartialMultiSegmentWildcard {
            pattern: pattern.to_owned(),
            segment: segment.to_owned(),
        });
    }
    if segment.contains(['{', '}']) {
        return Err(PathPatternError::Capture {
            pattern: pattern.to_owned(),
            segment: segment.to_owned(),
        });
    }
    Ok(Segment::Glob(segment.to_owned()))
}

/// Matches name segments against pattern segments, with `**` as the wildcard over whole
/// segments.
///
/// This is the usual greedy wildcard match: on a mismatch it goes back to the last `**` and
/// lets it take one more segment. Each other pattern segment takes exactly one name
/// segment, so going back further could not find a match that this misses.
fn match_segments(patterns: &[Segment], names: &[&str]) -> bool {
    let (mut p, mut n) = (0, 0);
    // The pattern position after the last `**` seen, and the name position it resumes at.
    let mut resume: Option<(usize, usize)> = None;
    while n < names.len() {
        match patterns.get(p) {
            Some(Segment::AnySegments) => {
                resume = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(Segment::Glob(glob)) if glob_matches(glob, names[n]) => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        let Some((after_any, start)) = resume else {
            return false;
        };
        resume = Some((after_any, start + 1));
        p = after_any;
        n = start + 1;
    }
    patterns[p..]
        .iter()
        .all(|segment| *segment == Segment::AnySegments)
}

/// Matches one non-empty name segment against a segment pattern, where `*` matches zero or
/// more characters. The same greedy method as [`match_segments`], over characters.
fn glob_matches(glob: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let glob: Vec<char> = glob.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut g, mut n) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while n < name.len() {
        match glob.get(g) {
            Some('*') => {
                resume = Some((g + 1, n));
                g += 1;
                continue;
            }
            Some(&c) if c == name[n] => {
                g += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        let Some((after_star, start)) = resume else {
            return false;
        };
        resume = Some((after_star, start + 1));
        g = after_star;
        n = start + 1;
    }
    glob[g..].iter().all(|&c| c == '*')
}

/// Returns the regex of one segment pattern other than `**`.
fn glob_regex(glob: &str) -> String {
    if glob.chars().all(|c| c == '*') {
        // Only `*` is possible here, since parsing rejects `**` inside a segment. It must
        // not match an empty segment.
        return "[^/]+".to_owned();
    }
    glob.split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(IN_SEGMENT_WILDCARD)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(text).unwrap_or_else(|err| panic!("{text:?} should parse: {err}"))
    }

    /// Asserts that `text` matches each of `matching` and none of `other`, both directly and
    /// through its regex.
    fn assert_matches(text: &str, matching: &[&str], other: &[&str]) {
        let pattern = pattern(text);
        let regex = Regex::new(&pattern.to_regex()).expect("the translation compiles");
        for name in matching {
            assert!(pattern.matches(name), "{text:?} should match {name:?}");
            assert!(
                regex.is_match(name),
                "regex of {text:?} should match {name:?}"
            );
        }
        for name in other {
            assert!(!pattern.matches(name), "{text:?} should not match {name:?}");
            assert!(
                !regex.is_match(name),
                "regex of {text:?} should not match {name:?}"
            );
        }
    }

    #[test]
    fn literal_pattern_matches_itself() {
        assert_matches(
            "projects/_/buckets/photos/objects/cat.jpg",
            &[
                "projects/_/buckets/photos/objects/cat.jpg",
                "/projects/_/buckets/photos/objects/cat.jpg",
            ],
            &[
                "projects/_/buckets/photos/objects/Cat.jpg",
                "projects/_/buckets/photos/objects/cat.jpg/",
                "projects/_/buckets/photos/objects/catxjpg",
                "projects/_/buckets/photos",
                "//projects/_/buckets/photos/objects/cat.jpg",
            ],
        );
    }

    #[test]
    fn star_matches_one_segment() {
        assert_matches(
            "projects/_/buckets/*/objects/cat.jpg",
            &["projects/_/buckets/photos/objects/cat.jpg"],
            &[
                "projects/_/buckets/a/b/objects/cat.jpg",
                "projects/_/buckets//objects/cat.jpg",
            ],
        );
    }

    #[test]
    fn star_inside_segment() {
        assert_matches(
            "objects/obj*",
            &["objects/obj", "objects/object", "objects/obj*"],
            &["objects/ob", "objects/obj/x", "objects/xobj"],
        );
        assert_matches(
            "objects/*.txt",
            &["objects/a.txt", "objects/.txt"],
            &["objects/a.txt.gz", "objects/dir/a.txt", "objects/a_txt"],
        );
        assert_matches(
            "objects/a*b*c",
            &["objects/abc", "objects/aXbYc", "objects/abbc"],
            &["objects/acb", "objects/ab"],
        );
    }

    #[test]
    fn star_skips_empty_segments() {
        assert_matches(
            "objects/dir/*",
            &["objects/dir/a"],
            &["objects/dir/", "objects/dir"],
        );
    }

    #[test]
    fn trailing_any_segments() {
        assert_matches(
            "projects/_/buckets/photos/**",
            &[
                "projects/_/buckets/photos",
                "projects/_/buckets/photos/objects/cat.jpg",
                "projects/_/buckets/photos/objects/dir/",
                "projects/_/buckets/photos/",
            ],
            &[
                "projects/_/buckets/photo",
                "projects/_/buckets/other/objects/a",
            ],
        );
    }

    #[test]
    fn any_segments_in_middle() {
        assert_matches(
            "projects/_/buckets/**/r*.txt",
            &[
                "projects/_/buckets/r.txt",
                "projects/_/buckets/b/objects/readme.txt",
                "projects/_/buckets/b/objects/x//r1.txt",
            ],
            &[
                "projects/_/buckets/b/objects/readme.md",
                "projects/_/buckets/b/objects/xr.txt",
                "projects/x/buckets/b/objects/r.txt",
            ],
        );
    }

    #[test]
    fn leading_any_segments() {
        assert_matches(
            "**/cat.jpg",
            &[
                "cat.jpg",
                "/cat.jpg",
                "a/b/cat.jpg",
                "//cat.jpg",
                "/a/cat.jpg",
            ],
            &["cat.jpg/x", "acat.jpg", ""],
        );
    }

    #[test]
    fn only_any_segments_matches_all() {
        assert_matches("**", &["", "/", "a", "a/b//c/", "line\nbreak"], &[]);
        assert_matches("/**/**", &["", "a/b"], &[]);
    }

    #[test]
    fn regex_special_characters_are_literal() {
        assert_matches(
            "a+b/(c)|d.[e]$^\\",
            &["a+b/(c)|d.[e]$^\\"],
            &["aab/(c)|d.[e]$^\\", "a+b/c|d.[e]$^\\"],
        );
    }

    #[test]
    fn translation_examples() {
        assert_eq!(pattern("a/*/c").to_regex(), "^/?a/[^/]+/c$");
        assert_eq!(pattern("/a/**").to_regex(), "^/?a(?:/[^/]*)*$");
        assert_eq!(pattern("**/b.txt").to_regex(), r"^/?(?:[^/]*/)*b\.txt$");
        assert_eq!(pattern("a/r*.txt").to_regex(), r"^/?a/r[^/]*\.txt$");
    }

    #[test]
    fn invalid_patterns_rejected() {
        assert_eq!(PathPattern::parse(""), Err(PathPatternError::Empty));
        assert_eq!(PathPattern::parse("/"), Err(PathPatternError::Empty));
        assert_eq!(
            PathPattern::parse("a//b"),
            Err(PathPatternError::EmptySegment {
                pattern: "a//b".to_owned(),
                position: 2
            })
        );
        assert_eq!(
            PathPattern::parse("a/b/"),
            Err(PathPatternError::EmptySegment {
                pattern: "a/b/".to_owned(),
                position: 3
            })
        );
        assert_eq!(
            PathPattern::parse("a/b**"),
            Err(PathPatternError::PartialMultiSegmentWildcard {
                pattern: "a/b**".to_owned(),
                segment: "b**".to_owned()
            })
        );
        assert_eq!(
            PathPattern::parse("a/***"),
            Err(PathPatternError::PartialMultiSegmentWildcard {
                pattern: "a/***".to_owned(),
                segment: "***".to_owned()
            })
        );
        assert_eq!(
            PathPattern::parse("buckets/{bucket}"),
            Err(PathPatternError::Capture {
                pattern: "buckets/{bucket}".to_owned(),
                segment: "{bucket}".to_owned()
            })
        );
    }

    #[test]
    fn exact_regex_matches_only_text() {
        let regex = Regex::new(&exact_regex("storage.objects.create")).expect("compiles");
        assert!(regex.is_match("storage.objects.create"), "the text itself");
        assert!(!regex.is_match("storage.objects.createX"), "a longer text");
        assert!(!regex.is_match("storageXobjects.create"), "'.' is literal");
        assert!(!regex.is_match("Storage.objects.create"), "case counts");
    }

    #[test]
    fn wildcards_detected() {
        assert!(!pattern("a/b.txt").has_wildcards(), "literal");
        assert!(pattern("a/*.txt").has_wildcards(), "star in a segment");
        assert!(pattern("a/**").has_wildcards(), "any segments");
    }

    /// Pattern segments from a small alphabet, so that random names often match.
    fn pattern_segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "ab", "*", "**", "a*", "*b", "*a*"])
    }

    /// Name segments from the same alphabet, the empty segment included.
    fn name_segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "ab", "ba", "aab", "", "*"])
    }

    fn join(leading_slash: bool, segments: &[&str]) -> String {
        let body = segments.join("/");
        if leading_slash {
            format!("/{body}")
        } else {
            body
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn regex_agrees_with_matcher(
            pattern_slash in any::<bool>(),
            pattern_segments in prop::collection::vec(pattern_segment(), 1..6),
            name_slash in any::<bool>(),
            name_segments in prop::collection::vec(name_segment(), 1..7),
        ) {
            let text = join(pattern_slash, &pattern_segments);
            let name = join(name_slash, &name_segments);
            let pattern = PathPattern::parse(&text).expect("generated patterns are valid");
            let regex = Regex::new(&pattern.to_regex()).expect("the translation compiles");
            prop_assert_eq!(
                pattern.matches(&name),
                regex.is_match(&name),
                "pattern {:?}, regex {:?}, name {:?}",
                text,
                pattern.to_regex(),
                name
            );
        }

        #[test]
        fn literal_matches_only_itself(
            segments in prop::collection::vec("[a-z0-9._-]{1,4}", 1..5),
            other in prop::collection::vec("[a-z0-9._-]{0,4}", 1..5),
            slash in any::<bool>(),
        ) {
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            let other: Vec<&str> = other.iter().map(String::as_str).collect();
            let pattern = PathPattern::parse(&join(false, &segments)).expect("valid literal");
            prop_assert!(pattern.matches(&join(slash, &segments)));
            // Without the added slash, a leading empty segment is itself a leading `/`, which
            // a match ignores once: `/_` is the name `_`.
            let compared = match other.split_first() {
                Some((&"", rest)) if !slash && !rest.is_empty() => rest,
                _ => &other[..],
            };
            prop_assert_eq!(pattern.matches(&join(slash, &other)), compared == segments);
        }

        #[test]
        fn leading_slash_of_pattern_ignored(
            pattern_segments in prop::collection::vec(pattern_segment(), 1..5),
            name_segments in prop::collection::vec(name_segment(), 1..6),
        ) {
            let name = join(false, &name_segments);
            let plain = PathPattern::parse(&join(false, &pattern_segments)).expect("valid");
            let slashed = PathPattern::parse(&join(true, &pattern_segments)).expect("valid");
            prop_assert_eq!(plain.matches(&name), slashed.matches(&name));
            prop_assert_eq!(plain.to_regex(), slashed.to_regex());
        }

        #[test]
        fn any_segments_pattern_matches_everything(name in "\\PC{0,20}") {
            prop_assert!(pattern("**").matches(&name));
        }
    }
}
