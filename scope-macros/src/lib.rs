//! Procedural macros for go-go-scope.
