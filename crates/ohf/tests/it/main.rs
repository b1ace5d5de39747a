mod scenarios;
mod scripts;
mod support;
