//! `gradle-version`: the version a Gradle build declares, read without running Gradle.
//!
//! Replaces the seed's `readFile 'build.gradle' =~ /version\s+=\s+['"](.+)['"]/`,
//! which also matched plugin lines, ignored comments and Kotlin builds, and
//! fell back to the string `Unknown` instead of failing.

mod parse;

use std::path::{Path, PathBuf};

use bg_core::cli::OutputArgs;
use bg_core::{Code, Failure, Report};
use clap::Parser;

pub use parse::{Found, Problem, find_in_build_script, read_properties};

/// Print the version a Gradle build declares.
///
/// Looks in build.gradle, build.gradle.kts, then gradle.properties, and
/// resolves `${prop}` and `project.property("prop")` from gradle.properties.
#[derive(Debug, Parser)]
#[command(name = "gradle-version", version, max_term_width = 100)]
pub struct Cli {
    /// Project directory holding the build files
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    /// Read this build file instead (build.gradle, build.gradle.kts or gradle.properties)
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Print this when no version is declared, instead of exiting 3
    #[arg(long, value_name = "VALUE")]
    pub default: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Why no version could be printed.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },

    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("no build.gradle, build.gradle.kts or gradle.properties in {}", dir.display())]
    NoBuild { dir: PathBuf },

    #[error("{}: {problem}", path.display())]
    NotFound { path: PathBuf, problem: Problem },
}

impl Failure for VersionError {
    fn code(&self) -> Code {
        match self {
            VersionError::Missing { .. } => Code::Usage,
            VersionError::Unreadable { .. }
            | VersionError::NoBuild { .. }
            | VersionError::NotFound { .. } => Code::Unsafe,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            VersionError::Missing { .. } => "check --dir / --file".to_string(),
            VersionError::Unreadable { .. } => "check the file's permissions".to_string(),
            VersionError::NoBuild { .. } => "run it in the project's root or pass --dir".to_string(),
            VersionError::NotFound { .. } => {
                "declare `version = '1.2.3'` in the build file or version=1.2.3 in gradle.properties, or pass --default".to_string()
            }
        })
    }
}

impl bg_core::Tool for Cli {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    fn run(self) -> bg_core::Result<Report> {
        let found = match self.find() {
            Ok(found) => found,
            Err(VersionError::Missing { path }) => {
                return Err(VersionError::Missing { path }.into());
            }
            Err(error) => match &self.default {
                Some(default) => {
                    bg_core::log::warn(&format!("{error}; using --default {default}"));
                    Found {
                        version: default.clone(),
                        source: "--default".to_string(),
                    }
                }
                None => return Err(error.into()),
            },
        };
        bg_core::log::debug(&format!("version {} from {}", found.version, found.source));
        Ok(Report::new(found.version.clone())
            .field("VERSION", found.version)
            .field("VERSION_SOURCE", found.source))
    }
}

impl Cli {
    fn find(&self) -> Result<Found, VersionError> {
        if let Some(file) = &self.file {
            let file = if file.is_relative() {
                self.dir.join(file)
            } else {
                file.clone()
            };
            if !file.is_file() {
                return Err(VersionError::Missing { path: file });
            }
            let dir = file.parent().unwrap_or(Path::new("."));
            return from_file(&file, &properties_in(dir)?);
        }
        if !self.dir.is_dir() {
            return Err(VersionError::Missing {
                path: self.dir.clone(),
            });
        }
        let properties = properties_in(&self.dir)?;
        let candidates = ["build.gradle", "build.gradle.kts", "gradle.properties"];
        let mut last = None;
        for name in candidates {
            let path = self.dir.join(name);
            if !path.is_file() {
                continue;
            }
            match from_file(&path, &properties) {
                Ok(found) => return Ok(found),
                // A reference that cannot be resolved is an answer, not a reason to look further.
                Err(
                    e @ VersionError::NotFound {
                        problem: Problem::Unresolved { .. },
                        ..
                    },
                ) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(VersionError::NoBuild {
            dir: self.dir.clone(),
        }))
    }
}

fn read(path: &Path) -> Result<String, VersionError> {
    std::fs::read_to_string(path).map_err(|source| VersionError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

fn properties_in(dir: &Path) -> Result<Vec<(String, String)>, VersionError> {
    let path = dir.join("gradle.properties");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    Ok(read_properties(&read(&path)?))
}

fn from_file(path: &Path, properties: &[(String, String)]) -> Result<Found, VersionError> {
    let text = read(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let result = if name.ends_with(".properties") {
        read_properties(&text)
            .into_iter()
            .rev()
            .find(|(k, _)| k == "version")
            .map(|(_, v)| Found {
                version: v,
                source: String::new(),
            })
            .ok_or(Problem::NoVersion)
    } else {
        find_in_build_script(&text, properties)
    };
    result
        .map(|mut found| {
            found.source = if found.source.is_empty() {
                name.to_string()
            } else {
                format!("{name}:{}", found.source)
            };
            found
        })
        .map_err(|problem| VersionError::NotFound {
            path: path.to_path_buf(),
            problem,
        })
}
