//! The generator behind the key table in `keys.rs`: `macro_rules!` that turn each declared key
//! into its TOML field, its environment variable, its `shoal agent` flag, its parser and range
//! check, and its entry in the reference (`Key`).
//!
//! Owns the grammar of a row and nothing else: it must not name any key (keys.rs does) nor
//! decide a default or a cross-key rule (validate.rs does).
//!
//! A row:
//!
//! ```text
//! /// One line: what the key is (also the flag's help text when it has a flag)
//! key (cli)? : RawType => ValueType = parser {
//!     env: "SHOAL_KEY" env_conversion,                                  // optional
//!     flag: "flag-name" field: FieldType = flag_conversion [clap attrs], // optional
//!     range: (lowest, highest),                                         // optional, inclusive
//!     default: toml_value,  or  default_is: "what it defaults to",     // one of them
//! }
//! ```
//!
//! `RawType` is what one source gives (TOML deserializes it; the environment and flag
//! conversions produce it), `parser: fn(&RawType) -> Result<ValueType, String>` checks it, and
//! an error names the key's TOML path. `(cli)` marks a key that is not in the file (`config`).
//! A section `[table] => Target` sets every key of the table in a `Target` of the same field
//! names (`Values::apply`).

/// The whole table: `root { rows }` then `[table] (=> Target)? { rows }`...; rows in the order
/// their flags appear in `shoal agent --help`.
macro_rules! config_keys {
    (
        root { $($root:tt)* }
        $( [$table:ident] $(=> $target:path)? { $($rows:tt)* } )*
    ) => {
        config_section! {
            []
            root [$($table)*] [] { $($root)* }
            $( $table [] [$($target)?] { $($rows)* } )*
        }
        /// Every key, by section: the top level first, then the tables.
        pub const SECTIONS: &[&[Key]] = &[root::KEYS, $($table::KEYS),*];
    };
}

/// The sections one after the other, each into a module holding its `Raw` (one source's
/// values), `Values` (parsed) and `KEYS` (its reference entries); the top level also holds the
/// tables (`$sub`). The flags of each section are gathered in `[$fields]`; after the last
/// section they make `AgentArgs`.
macro_rules! config_section {
    ([$($fields:tt)*]) => {
        /// The `shoal agent` flags. This exact set is relied on by tools outside the project.
        #[derive(Clone, Debug, Default, clap::Args)]
        pub struct AgentArgs {
            $($fields)*
        }
    };
    ([$($fields:tt)*] $section:ident [$($sub:ident)*] [$($target:path)?] {
        $(
            #[doc = $doc:literal]
            $key:ident $(($cli:ident))? : $raw:ty => $t:ty = $parse:path {
                $( env: $env:literal $envconv:path, )?
                $( flag: $flag:literal $field:ident : $fty:ty = $fconv:path [$($attr:tt)*], )?
                $( range: ($lo:expr, $hi:expr), )?
                $( default: $default:tt, )?
                $( default_is: $default_is:literal, )?
            }
        )*
    } $($rest:tt)*) => {
        config_section! {
            [
                $($fields)*
                $( $( #[doc = $doc] #[arg(long = $flag, $($attr)*)] pub $field: $fty, )? )*
            ]
            $($rest)*
        }

        #[doc = concat!("The keys of `", stringify!($section), "`, from the table in keys.rs.")]
        pub mod $section {
            #[allow(unused_imports)]
            use super::*;

            /// This section as one source (file, environment, flags) gives it; unset: keep
            /// what a lower source gave.
            #[derive(Debug, Default, serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct Raw {
                $(
                    #[doc = $doc]
                    $( #[serde(skip)] #[doc = concat!(" (", stringify!($cli), " only)")] )?
                    pub $key: Option<$raw>,
                )*
                $( #[serde(default)] pub $sub: super::$sub::Raw, )*
            }

            /// This section's values, parsed and range-checked; unset: no source gave it.
            #[derive(Debug, Default)]
            pub struct Values {
                $( pub $key: Option<$t>, )*
                $( pub $sub: super::$sub::Values, )*
            }

            impl Raw {
                /// Values set in `hi` replace those of `self`.
                pub fn overlay(&mut self, hi: Raw) {
                    $( if hi.$key.is_some() { self.$key = hi.$key; } )*
                    $( self.$sub.overlay(hi.$sub); )*
                }

                /// The values the environment gives, through `env`.
                #[allow(unused_variables)]
                pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Raw {
                    #[allow(unused_mut)]
                    let mut raw = Raw::default();
                    $( $( raw.$key = env($env).and_then($envconv); )? )*
                    $( raw.$sub = super::$sub::Raw::from_env(env); )*
                    raw
                }

                /// The values the `shoal agent` flags give.
                #[allow(unused_variables)]
                pub fn from_flags(args: &AgentArgs) -> Result<Raw, ConfigError> {
                    #[allow(unused_mut)]
                    let mut raw = Raw::default();
                    $( $( raw.$key = $fconv(&args.$field, concat!("--", $flag))?; )? )*
                    $( raw.$sub = super::$sub::Raw::from_flags(args)?; )*
                    Ok(raw)
                }

                /// Parses every value given; an error names the key's TOML path.
                pub fn parse(&self) -> Result<Values, ConfigError> {
                    Ok(Values {
                        $(
                            $key: match &self.$key {
                                None => None,
                                Some(r) => {
                                    let path = config_path!($section $key);
                                    let v: $t = $parse(r).map_err(|m| invalid(path, m))?;
                                    $( check_range(&v, &$lo, &$hi, $doc)
                                        .map_err(|m| invalid(path, m))?; )?
                                    Some(v)
                                }
                            },
                        )*
                        $( $sub: self.$sub.parse()?, )*
                    })
                }
            }

            config_apply!([$($target)?] $($key)*);

            /// This section's entries of the reference.
            pub const KEYS: &[Key] = &[
                $(
                    Key {
                        path: config_path!($section $key),
                        env: config_opt!($($env)?),
                        flag: config_opt!($(concat!("--", $flag))?),
                        value_type: stringify!($t),
                        range: config_opt!($(concat!(stringify!($lo), " ..= ", stringify!($hi)))?),
                        default: config_opt!($(stringify!($default))?),
                        default_is: config_opt!($($default_is)?),
                        doc: $doc,
                        in_file: stringify!($($cli)?).is_empty(),
                    },
                )*
            ];
        }
    };
}

/// `Values::apply` for a section declared `=> Target`.
macro_rules! config_apply {
    ([] $($key:ident)*) => {};
    ([$target:path] $($key:ident)*) => {
        impl Values {
            /// Sets in `t` every value some source gave.
            pub fn apply(self, t: &mut $target) {
                $( if let Some(v) = self.$key { t.$key = v; } )*
            }
        }
    };
}

/// A key's TOML path: `key` at the top level, `table.key` in a table.
macro_rules! config_path {
    (root $key:ident) => {
        stringify!($key)
    };
    ($section:ident $key:ident) => {
        concat!(stringify!($section), ".", stringify!($key))
    };
}

/// `Some(x)` for one expression, `None` for none.
macro_rules! config_opt {
    () => {
        None
    };
    ($e:expr) => {
        Some($e)
    };
}
