//! The word count's input: English-like text, generated deterministically, and the
//! baseline it is measured against, a plain single-threaded Rust word count of the
//! same text.

use std::collections::HashMap;

/// A small deterministic PRNG (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0..n`, as an index.
    fn pick(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }

    /// True with probability `per_mille`/1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The most frequent English words, most frequent first: the head of the vocabulary.
const COMMON: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "I",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "not",
    "word",
    "but",
    "what",
    "some",
    "we",
    "can",
    "out",
    "other",
    "were",
    "all",
    "there",
    "when",
    "up",
    "use",
    "your",
    "how",
    "said",
    "an",
    "each",
    "she",
    "which",
    "do",
    "their",
    "time",
    "if",
    "will",
    "way",
    "about",
    "many",
    "then",
    "them",
    "write",
    "would",
    "like",
    "so",
    "these",
    "her",
    "long",
    "make",
    "thing",
    "see",
    "him",
    "two",
    "has",
    "look",
    "more",
    "day",
    "could",
    "go",
    "come",
    "did",
    "number",
    "sound",
    "no",
    "most",
    "people",
    "my",
    "over",
    "know",
    "water",
    "than",
    "call",
    "first",
    "who",
    "may",
    "down",
    "side",
    "been",
    "now",
    "find",
    "don't",
    "it's",
    "well-known",
    "café",
    "naïve",
];

const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "wh", "str",
];
const VOWELS: &[&str] = &[
    "a", "e", "i", "o", "u", "ai", "ea", "ee", "ie", "oa", "ou", "y",
];
const CODAS: &[&str] = &[
    "", "", "", "n", "r", "s", "t", "l", "nd", "ng", "st", "ck", "rm", "ght", "ss",
];

/// Vocabulary size: the common words plus pseudo-words made of syllables.
const VOCABULARY: usize = 50_000;

/// A deterministic vocabulary ordered by rank, and the Zipf (s = 1) cumulative weights.
fn vocabulary() -> (Vec<String>, Vec<f64>) {
    let mut rng = Rng(0x5EED_0001);
    let mut words: Vec<String> = COMMON.iter().map(|w| w.to_string()).collect();
    let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
    while words.len() < VOCABULARY {
        let syllables = 1 + rng.pick(4);
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.pick(ONSETS.len())]);
            w.push_str(VOWELS[rng.pick(VOWELS.len())]);
            w.push_str(CODAS[rng.pick(CODAS.len())]);
        }
        // A few words with digits in them (model numbers, "mp3"-like).
        if rng.chance(5) {
            w.push_str(&rng.below(100).to_string());
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    let mut cum = Vec::with_capacity(words.len());
    let mut total = 0.0;
    for rank in 1..=words.len() {
        total += 1.0 / rank as f64;
        cum.push(total);
    }
    (words, cum)
}

/// About `bytes` of English-like text in lines of at most ~80 characters: Zipf-ranked
/// words, capitalised sentence starts, some words in capitals, numbers, commas,
/// semicolons, quotes, parentheses, dashes, apostrophes, hyphens and a few non-ASCII
/// letters (which split words). Deterministic.
pub(super) fn generate_text(bytes: usize) -> String {
    let (words, cum) = vocabulary();
    let total = *cum.last().unwrap_or(&1.0);
    let mut rng = Rng(0xC0FF_EE00_2024);
    let mut text = String::with_capacity(bytes + 128);
    let mut line_len = 0usize;
    let mut sentence_start = true;
    let mut open_quote = false;
    let mut open_paren = false;
    while text.len() < bytes {
        // The next token, with its case.
        let mut token = if rng.chance(15) {
            // A number or a year.
            if rng.chance(400) {
                (1800 + rng.below(230)).to_string()
            } else {
                rng.below(10_000).to_string()
            }
        } else {
            let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let i = cum.partition_point(|&c| c < x).min(words.len() - 1);
            words[i].clone()
        };
        if rng.chance(8) {
            token = token.to_uppercase();
        } else if sentence_start || rng.chance(30) {
            let mut c = token.chars();
            if let Some(f) = c.next() {
                token = f.to_uppercase().chain(c).collect();
            }
        }
        sentence_start = false;
        if !open_quote && !open_paren && rng.chance(10) {
            token.insert(0, '"');
            open_quote = true;
        } else if !open_quote && !open_paren && rng.chance(6) {
            token.insert(0, '(');
            open_paren = true;
        }
        // Punctuation after it.
        let mut after = String::new();
        if open_quote && rng.chance(200) {
            after.push('"');
            open_quote = false;
        }
        if open_paren && rng.chance(250) {
            after.push(')');
            open_paren = false;
        }
        let p = rng.below(1000);
        if p < 70 {
            after.push(',');
        } else if p < 140 {
            after.push(if p < 125 {
                '.'
            } else if p < 133 {
                '?'
            } else {
                '!'
            });
            if open_quote {
                after.push('"');
                open_quote = false;
            }
            if open_paren {
                after.push(')');
                open_paren = false;
            }
            sentence_start = true;
        } else if p < 150 {
            after.push(';');
        } else if p < 156 {
            after.push_str(" —");
        } else if p < 160 {
            after.push(':');
        }
        token.push_str(&after);
        // Wrap at about 80 characters: each line is one record.
        if line_len > 0 && line_len + 1 + token.len() > 80 {
            text.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            text.push(' ');
            line_len += 1;
        }
        line_len += token.len();
        text.push_str(&token);
    }
    text.push('\n');
    text
}

/// The baseline: a plain single-threaded word count. Words are maximal runs of ASCII
/// letters and digits, lowercased (anything else, non-ASCII included, separates them).
pub(super) fn count_words(text: &str) -> HashMap<String, u64> {
    fn bump(counts: &mut HashMap<String, u64>, word: &str) {
        if let Some(n) = counts.get_mut(word) {
            *n += 1;
        } else {
            counts.insert(word.to_string(), 1);
        }
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut word = String::with_capacity(64);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() {
            word.push(char::from(b.to_ascii_lowercase()));
        } else if !word.is_empty() {
            bump(&mut counts, &word);
            word.clear();
        }
    }
    if !word.is_empty() {
        bump(&mut counts, &word);
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_text_is_deterministic_and_varied() {
        let a = generate_text(20_000);
        assert_eq!(a, generate_text(20_000));
        assert!(a.len() >= 20_000);
        assert!(a.lines().all(|l| l.len() <= 120), "lines are wrapped");
        assert!(a.contains(',') && a.contains('.'), "punctuation");
        assert!(a.chars().any(|c| c.is_ascii_uppercase()), "mixed case");
        let counts = count_words(&a);
        assert!(
            counts.len() > 500,
            "a realistic vocabulary: {}",
            counts.len()
        );
        assert!(
            counts["the"] > counts.values().sum::<u64>() / 50,
            "Zipf head"
        );
    }

    #[test]
    fn baseline_tokenises_like_the_example() {
        let c = count_words("Don't PANIC — naïve café, the THE the2 42\n");
        let mut got: Vec<(&str, u64)> = c.iter().map(|(w, n)| (w.as_str(), *n)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("42", 1),
                ("caf", 1),
                ("don", 1),
                ("na", 1),
                ("panic", 1),
                ("t", 1),
                ("the", 2),
                ("the2", 1),
                ("ve", 1)
            ]
        );
    }
}
