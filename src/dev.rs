//! `shoal dev`: placeholder
