//! Prompt categories: phrase lists that trust-and-safety teams keep in
//! `categories/<name>.txt` beside the policy. A prompt matches a category
//! when one of its phrases appears on word boundaries, after the prompt is
//! normalised the way evasions are undone cheaply: Unicode NFKC, accents
//! dropped, lower case, look-alike letters from other scripts folded to
//! Latin, digits and symbols standing for letters inside a word read as
//! those letters (`s3x`), invisible characters removed, and letters spelt
//! out one by one (`s e x`, `s.e.x`) joined. Only the names of the matched
//! categories reach the policy input, never the prompt.

use std::collections::BTreeMap;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The category of prompts that name a public figure of the gallery.
pub const PUBLIC_FIGURE_NAMED: &str = "public_figure_named";

/// Phrase lists by category name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Categories {
    lists: BTreeMap<String, Vec<Vec<String>>>,
}

impl Categories {
    /// Adds a category from its file's text: one phrase a line, `#` starts
    /// a comment.
    pub fn add(&mut self, name: &str, text: &str) {
        let phrases =
            text.lines().map(|l| l.split('#').next().unwrap_or("")).map(words).filter(|w| !w.is_empty()).collect();
        self.lists.insert(name.to_string(), phrases);
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lists.keys().map(String::as_str)
    }

    /// The categories `prompt` matches, in name order; `public_figures` are
    /// the gallery's names, which make `public_figure_named`.
    pub fn matching(&self, prompt: &str, public_figures: &[String]) -> Vec<String> {
        let plain = words(prompt);
        let joined = join_spelt_out(&plain);
        let found = |phrase: &[String]| contains_phrase(&plain, phrase) || contains_phrase(&joined, phrase);
        let mut out: Vec<String> = self
            .lists
            .iter()
            .filter(|(_, phrases)| phrases.iter().any(|p| found(p)))
            .map(|(name, _)| name.clone())
            .collect();
        if public_figures.iter().map(|n| words(n)).any(|p| !p.is_empty() && found(&p)) {
            out.push(PUBLIC_FIGURE_NAMED.to_string());
        }
        out.sort();
        out.dedup();
        out
    }
}

fn contains_phrase(words: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && words.windows(phrase.len()).any(|w| w == phrase)
}

/// Runs of one-letter words (`s e x`) joined into one (`sex`), the rest
/// kept. A run that starts with a word of one letter of its own (`a s e x
/// y`) is also joined without it.
fn join_spelt_out(words: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut Vec<String>| {
        if run.len() > 2 && (run.starts_with('a') || run.starts_with('i')) {
            out.push(run[1..].to_string());
        }
        if !run.is_empty() {
            out.push(std::mem::take(run));
        }
    };
    for w in words {
        if w.chars().count() == 1 {
            run.push_str(w);
        } else {
            flush(&mut run, &mut out);
            out.push(w.clone());
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The normalised words of a text.
pub fn words(text: &str) -> Vec<String> {
    let folded: String = text
        .nfkc()
        .collect::<String>()
        .nfd()
        .filter(|c| !is_combining_mark(*c) && !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .map(fold_lookalike)
        .collect();
    folded
        .split(|c: char| !(c.is_alphanumeric() || LEET.iter().any(|(l, _)| *l == c)))
        .filter(|w| !w.is_empty())
        .map(read_leet)
        .filter(|w| !w.is_empty())
        .collect()
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{034F}')
}

/// Digits and symbols that stand for letters inside a word.
const LEET: [(char, char); 9] =
    [('0', 'o'), ('1', 'i'), ('3', 'e'), ('4', 'a'), ('5', 's'), ('7', 't'), ('@', 'a'), ('$', 's'), ('!', 'i')];

/// A word mixing letters with leet digits or symbols reads as letters; a
/// number stays a number, and symbols alone are no word.
fn read_leet(word: &str) -> String {
    let has_letter = word.chars().any(char::is_alphabetic);
    if !has_letter {
        return word.chars().filter(|c| c.is_alphanumeric()).collect();
    }
    word.chars().map(|c| LEET.iter().find(|(l, _)| *l == c).map_or(c, |(_, to)| *to)).collect()
}

/// Letters from other scripts that look like Latin ones.
fn fold_lookalike(c: char) -> char {
    match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'е' | 'ё' | 'ε' => 'e',
        'һ' => 'h',
        'і' | 'ї' | 'ι' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'н' | 'η' => 'n',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        'ɡ' => 'g',
        'ӏ' => 'l',
        'ս' => 'u',
        'ո' => 'n',
        'օ' => 'o',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn categories() -> Categories {
        let mut c = Categories::default();
        c.add("sexual", "# test list\nsex\nnude\nsexy photo\n");
        c.add("violence", "gore\n");
        c
    }

    #[test]
    fn evasions_are_undone_and_words_respected() {
        let c = categories();
        let figures = vec!["Grace Hopper".to_string()];
        for (prompt, want) in [
            ("a sunny beach", vec![]),
            ("SEX on the beach", vec!["sexual"]),
            ("s e x on the beach", vec!["sexual"]),
            ("s.e.x", vec!["sexual"]),
            ("a s.e.x poster", vec!["sexual"]),
            ("s3x", vec!["sexual"]),
            ("nսde", vec!["sexual"]),   // Armenian ս
            ("nudе", vec!["sexual"]),   // Cyrillic е
            ("ｓｅｘ", vec!["sexual"]), // fullwidth, NFKC
            ("se\u{200B}x", vec!["sexual"]),
            ("nudé", vec!["sexual"]),
            ("Essex county", vec![]), // a word boundary, not a substring
            ("a sexy photo of grace hopper", vec!["public_figure_named", "sexual"]),
            ("sexy photography", vec![]),
            ("GRACE   HOPPER in gore", vec!["public_figure_named", "violence"]),
            ("born in 1990", vec![]),
        ] {
            assert_eq!(c.matching(prompt, &figures), want, "{prompt}");
        }
    }
}
