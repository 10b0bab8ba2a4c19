//! Browser tests of the dashboard live in `tests/dashboard/`: each starts a real `weft agent -dev` (through
//! `weft-testkit`), a `chromedriver` and headless Chromium, and drives the pages the way a person does. They are a
//! workspace member of their own so that the WebDriver client is compiled only for `cargo test`, never for
//! `cargo build -p weft`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test` installs them); without them the tests say so and
//! pass vacuously. Screenshots of every page, at laptop and phone widths, go to `/tmp/weft-screenshots/` (or
//! `$WEFT_SCREENSHOTS`).
