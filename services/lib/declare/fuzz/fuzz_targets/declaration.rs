//! Arbitrary image files and declaration texts: reading them may refuse, never panic, and what
//! parses must describe itself the same way when read again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = declare::find_note(data) {
        assert!(note.len() <= data.len());
        let _ = declare::parse(note);
    }
    if let Ok(parsed) = declare::parse(data) {
        // Every topic name the parser accepts follows the rule, and nothing is listed twice.
        for topic in parsed.publishes.iter().chain(&parsed.subscribes).chain(&parsed.watches) {
            assert!(declare::check_topic_name(&topic.name).is_ok());
        }
        let mut names: Vec<&str> = parsed.publishes.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]));
    }
});
