mod lifecycle;
mod transitions;
