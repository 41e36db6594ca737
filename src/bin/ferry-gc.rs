//! `ferry-gc`: gives back the disk space of deleted images (see [`ferry::gc::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    ferry::gc::cli::main(std::env::args_os())
}
