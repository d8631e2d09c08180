//! `#[derive(Params)]` for mend steps.
//!
//! A step's parameters are declared once, as a struct: each field is a key
//! of the runbook's `with` table. The derive reads what the host needs to
//! check a runbook before anything runs (the `ParamSpec` list `mend step
//! inspect` shows) from the struct itself:
//!
//! - the key is the field's name;
//! - its TOML kind comes from the field's type (`String`: string; integers:
//!   integer; `f32`/`f64`: number; `bool`: boolean; `Vec`/sets: list; maps:
//!   table; anything else: any, the step checks it), `Option<T>` looking
//!   through to `T`; `#[param(kind = "table")]` overrides it;
//! - a field is required unless it is an `Option`, has `#[serde(default)]`
//!   (any form) or `#[param(default = LITERAL)]`;
//! - `#[param(default = LITERAL)]` (a string, integer, float or bool) is the
//!   default the host fills in, shown by `mend step inspect`;
//! - its `///` doc comment's first paragraph is its help, or
//!   `#[param(doc = "...")]` when the help needs lines of its own.
//!
//! The struct also derives `serde::Deserialize`, which parses it (all serde
//! attributes apply). When that fails, the generated code finds the field at
//! fault by trying each field's own type, so the host can point at the
//! runbook's line of that key.

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Expr, Fields, Lit, Type, parse_macro_input, spanned::Spanned};

/// Derive `mend_sdk::Params` for a struct of named fields.
#[proc_macro_derive(Params, attributes(param))]
pub fn derive_params(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Field {
    name: String,
    ty: Type,
    kind: proc_macro2::TokenStream,
    required: bool,
    default: Option<String>,
    doc: String,
    /// Serde parses it its own way (`deserialize_with`, `with`, `flatten`):
    /// its type alone cannot tell whether a value is wrong.
    custom: bool,
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.span(),
            "#[derive(Params)] takes a struct of named fields, one per `with` key",
        ));
    };
    let fields = match &data.fields {
        Fields::Named(f) => f.named.iter().collect::<Vec<_>>(),
        Fields::Unit => Vec::new(),
        Fields::Unnamed(f) => {
            return Err(syn::Error::new(
                f.span(),
                "#[derive(Params)] needs named fields: each name is a `with` key",
            ));
        }
    };
    let mut out = Vec::new();
    for f in fields {
        out.push(field(f)?);
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let specs = out.iter().map(|f| {
        let (n, kind, req, doc) = (&f.name, &f.kind, f.required, &f.doc);
        let default = match &f.default {
            Some(d) => quote!(::core::option::Option::Some(::std::string::String::from(#d))),
            None => quote!(::core::option::Option::None),
        };
        quote! {
            ::mend_sdk::ParamSpec {
                name: ::std::string::String::from(#n),
                kind: ::mend_sdk::ParamKind::#kind,
                required: #req,
                default: #default,
                doc: ::std::string::String::from(#doc),
            }
        }
    });
    let checks = out.iter().filter(|f| !f.custom).map(|f| {
        let (n, ty) = (&f.name, &f.ty);
        quote! {
            if let ::core::option::Option::Some(v) = map.get(#n) {
                if let ::core::result::Result::Err(e) =
                    ::mend_sdk::__private::serde_json::from_value::<#ty>(v.clone())
                {
                    return ::core::option::Option::Some((#n, e.to_string()));
                }
            }
        }
    });
    Ok(quote! {
        impl #impl_generics ::mend_sdk::Params for #name #ty_generics #where_clause {
            fn specs() -> ::std::vec::Vec<::mend_sdk::ParamSpec> {
                ::std::vec![#(#specs),*]
            }
            fn field_at_fault(
                map: &::mend_sdk::__private::serde_json::Map<
                    ::std::string::String,
                    ::mend_sdk::__private::serde_json::Value,
                >,
            ) -> ::core::option::Option<(&'static str, ::std::string::String)> {
                let _ = map;
                #(#checks)*
                ::core::option::Option::None
            }
        }
    })
}

fn field(f: &syn::Field) -> syn::Result<Field> {
    let ident = f.ident.clone().expect("named");
    let name = ident.to_string().trim_start_matches("r#").to_string();
    let (inner, optional) = match option_inner(&f.ty) {
        Some(t) => (t, true),
        None => (&f.ty, false),
    };
    let mut kind = kind_of(inner);
    let mut default = None;
    let mut serde_default = false;
    let mut custom = false;
    let mut doc = Vec::new();
    let mut doc_override = None;
    for attr in &f.attrs {
        if attr.path().is_ident("doc") {
            if let syn::Meta::NameValue(nv) = &attr.meta
                && let Expr::Lit(l) = &nv.value
                && let Lit::Str(s) = &l.lit
            {
                doc.push(s.value().trim().to_string());
            }
        } else if attr.path().is_ident("serde") {
            attr.parse_nested_meta(|m| {
                if m.path.is_ident("default") {
                    serde_default = true;
                } else if m.path.is_ident("deserialize_with")
                    || m.path.is_ident("with")
                    || m.path.is_ident("flatten")
                {
                    custom = true;
                }
                // Skip a value this derive does not read (`= "fn"`).
                if m.input.peek(syn::Token![=]) {
                    let _: Expr = m.value()?.parse()?;
                }
                Ok(())
            })?;
        } else if attr.path().is_ident("param") {
            attr.parse_nested_meta(|m| {
                if m.path.is_ident("default") {
                    let lit: Lit = m.value()?.parse()?;
                    default = Some(json_of(&lit)?);
                    Ok(())
                } else if m.path.is_ident("doc") {
                    let s: syn::LitStr = m.value()?.parse()?;
                    doc_override = Some(s.value());
                    Ok(())
                } else if m.path.is_ident("kind") {
                    let s: syn::LitStr = m.value()?.parse()?;
                    kind = match s.value().as_str() {
                        "string" => quote!(String),
                        "integer" => quote!(Integer),
                        "number" => quote!(Number),
                        "boolean" => quote!(Boolean),
                        "list" => quote!(List),
                        "table" => quote!(Table),
                        "any" => quote!(Any),
                        other => {
                            return Err(m.error(format!(
                                "unknown kind `{other}`: one of string, integer, number, boolean, list, table, any"
                            )));
                        }
                    };
                    Ok(())
                } else {
                    Err(m.error(
                        "#[param(...)] takes `default = LITERAL`, `kind = \"...\"` and `doc = \"...\"`",
                    ))
                }
            })?;
        }
    }
    // One line of help: the doc comment's first paragraph, joined; or
    // `#[param(doc = "...")]` as written (a help that needs its own lines).
    let doc = doc_override.unwrap_or_else(|| {
        doc.split(|l| l.is_empty())
            .next()
            .unwrap_or_default()
            .join(" ")
    });
    Ok(Field {
        name,
        ty: f.ty.clone(),
        kind,
        required: !(optional || serde_default || default.is_some()),
        default,
        doc,
        custom,
    })
}

/// `Option<T>`'s `T`.
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(a) => match a.args.first()? {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

fn kind_of(ty: &Type) -> proc_macro2::TokenStream {
    let last = match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Reference(r) => return kind_of(&r.elem),
        Type::Array(_) | Type::Slice(_) | Type::Tuple(_) => return quote!(List),
        _ => None,
    };
    match last.as_deref() {
        Some("String" | "str" | "PathBuf" | "char") => quote!(String),
        Some(
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
            | "isize",
        ) => quote!(Integer),
        Some("f32" | "f64") => quote!(Number),
        Some("bool") => quote!(Boolean),
        Some("Vec" | "VecDeque" | "BTreeSet" | "HashSet") => quote!(List),
        Some("BTreeMap" | "HashMap" | "Map") => quote!(Table),
        _ => quote!(Any),
    }
}

/// A literal default as JSON text.
fn json_of(lit: &Lit) -> syn::Result<String> {
    Ok(match lit {
        Lit::Str(s) => {
            let mut out = String::from("\"");
            for c in s.value().chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Lit::Int(i) => i.base10_digits().to_string(),
        Lit::Float(f) => f.base10_digits().to_string(),
        Lit::Bool(b) => b.value.to_string(),
        other => {
            return Err(syn::Error::new(
                other.span(),
                "a default is a string, integer, float or bool literal; for anything else use #[serde(default)] and say the default in the doc comment",
            ));
        }
    })
}
