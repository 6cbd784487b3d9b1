//! Procedural macros of `weir-udf`: `#[scalar]`, `#[table]` and `#[aggregate]`.
//!
//! Each macro keeps the author's item as written and adds a hidden type that implements
//! `weir_udf::__private::Function` (the signature for `describe` and a call into the SDK's
//! per-batch driver). Everything that can be checked from the syntax is checked here, with an
//! error pointing at the offending token; type support is checked by the SDK's traits.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    Expr, ExprArray, ExprLit, FnArg, GenericArgument, ImplItem, ItemFn, ItemImpl, Lit, Meta, Pat,
    PathArguments, ReturnType, Token, Type, TypeParamBound,
};

/// Exports a function computing one value per row.
///
/// Options: `name = "sql_name"` (default: the fn name), `deterministic = false` (default true).
#[proc_macro_attribute]
pub fn scalar(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, |options, function| {
        expand_fn(options, function, Kind::Scalar)
    })
}

/// Exports a function producing zero or more rows per input row.
///
/// It returns `impl Iterator<Item = T>`, `impl IntoIterator<Item = T>`, `Vec<T>` or `Option<T>`
/// (optionally inside `Result<_, E>`), where `T` is one value or a tuple of values, one per
/// output column. Options: `name = "..."`, `deterministic = false`, `columns = ["a", "b"]`
/// (default `f0`, `f1`, ... as in Flink).
#[proc_macro_attribute]
pub fn table(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, |options, function| {
        expand_fn(options, function, Kind::Table)
    })
}

/// Exports an aggregate function: put it on the `impl weir_udf::Aggregate for State` block.
///
/// `retract` and `merge` are reported as supported when the block defines them. Options:
/// `name = "..."` (default: the type name in snake_case), `deterministic = false`.
#[proc_macro_attribute]
pub fn aggregate(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = match Options::parse(attr.into(), false) {
        Ok(options) => options,
        Err(e) => return e.to_compile_error().into(),
    };
    let block = match syn::parse::<ItemImpl>(item) {
        Ok(block) => block,
        Err(e) => {
            return syn::Error::new(
                e.span(),
                "#[aggregate] goes on an `impl weir_udf::Aggregate for YourState` block",
            )
            .to_compile_error()
            .into();
        }
    };
    match expand_aggregate(options, block) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(
    attr: TokenStream,
    item: TokenStream,
    body: impl FnOnce(Options, ItemFn) -> syn::Result<TokenStream2>,
) -> TokenStream {
    let result = Options::parse(attr.into(), true).and_then(|options| {
        let function = syn::parse::<ItemFn>(item)?;
        body(options, function)
    });
    match result {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Scalar,
    Table,
}

#[derive(Default)]
struct Options {
    name: Option<String>,
    deterministic: Option<bool>,
    columns: Option<(Vec<String>, Span)>,
}

impl Options {
    fn parse(attr: TokenStream2, allow_columns: bool) -> syn::Result<Options> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
        let mut options = Options::default();
        for meta in metas {
            let Meta::NameValue(pair) = &meta else {
                return Err(syn::Error::new(
                    meta.span(),
                    "expected `name = \"...\"`, `deterministic = false` or `columns = [...]`",
                ));
            };
            let key = pair
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            match (key.as_str(), &pair.value) {
                (
                    "name",
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }),
                ) => {
                    let name = s.value();
                    if !is_sql_identifier(&name) {
                        return Err(syn::Error::new(
                            s.span(),
                            "a function name is letters, digits and `_`, not starting with a digit",
                        ));
                    }
                    options.name = Some(name);
                }
                (
                    "deterministic",
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(b), ..
                    }),
                ) => {
                    options.deterministic = Some(b.value);
                }
                ("columns", Expr::Array(ExprArray { elems, .. })) if allow_columns => {
                    let mut names = Vec::new();
                    for elem in elems {
                        match elem {
                            Expr::Lit(ExprLit {
                                lit: Lit::Str(s), ..
                            }) => names.push(s.value()),
                            other => {
                                return Err(syn::Error::new(
                                    other.span(),
                                    "column names are string literals",
                                ));
                            }
                        }
                    }
                    options.columns = Some((names, pair.value.span()));
                }
                _ => {
                    return Err(syn::Error::new(
                        pair.span(),
                        format!(
                            "unknown option `{key}`: expected `name = \"...\"`, \
                             `deterministic = false`{}",
                            if allow_columns {
                                " or `columns = [...]`"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
        }
        Ok(options)
    }
}

fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every lifetime, elided or named, with `'static`, so that a signature type such as
/// `&str` can name its trait impl outside any batch.
struct StaticLifetimes;

impl VisitMut for StaticLifetimes {
    fn visit_type_reference_mut(&mut self, reference: &mut syn::TypeReference) {
        reference.lifetime = Some(syn::Lifetime::new("'static", Span::call_site()));
        self.visit_type_mut(&mut reference.elem);
    }
    fn visit_lifetime_mut(&mut self, lifetime: &mut syn::Lifetime) {
        *lifetime = syn::Lifetime::new("'static", Span::call_site());
    }
}

fn with_static_lifetimes(ty: &Type) -> Type {
    let mut ty = ty.clone();
    StaticLifetimes.visit_type_mut(&mut ty);
    ty
}

/// `Result<T, E>` → `Some(T)`.
fn result_ok_type(ty: &Type) -> Option<&Type> {
    single_generic(ty, "Result")
}

fn single_generic<'t>(ty: &'t Type, name: &str) -> Option<&'t Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// The row type of a table function's return type, or an error saying what is accepted.
fn table_item_type(ty: &Type) -> syn::Result<Type> {
    let ty = result_ok_type(ty).unwrap_or(ty);
    if let Type::ImplTrait(bounds) = ty {
        for bound in &bounds.bounds {
            if let TypeParamBound::Trait(tr) = bound
                && let Some(last) = tr.path.segments.last()
                && (last.ident == "Iterator" || last.ident == "IntoIterator")
                && let PathArguments::AngleBracketed(args) = &last.arguments
            {
                for arg in &args.args {
                    if let GenericArgument::AssocType(assoc) = arg
                        && assoc.ident == "Item"
                    {
                        return Ok(assoc.ty.clone());
                    }
                }
            }
        }
    }
    if let Some(item) = single_generic(ty, "Vec").or_else(|| single_generic(ty, "Option")) {
        return Ok(item.clone());
    }
    Err(syn::Error::new(
        ty.span(),
        "a table function returns `impl Iterator<Item = T>`, `Vec<T>` or `Option<T>` \
         (optionally in a `Result`), where T is a value or a tuple of values",
    ))
}

fn expand_fn(options: Options, function: ItemFn, kind: Kind) -> syn::Result<TokenStream2> {
    let sig = &function.sig;
    let attribute = if kind == Kind::Scalar {
        "#[scalar]"
    } else {
        "#[table]"
    };
    if let Some(param) = sig
        .generics
        .params
        .iter()
        .find(|p| !matches!(p, syn::GenericParam::Lifetime(_)))
    {
        return Err(syn::Error::new(
            param.span(),
            format!("{attribute} functions cannot be generic: SQL calls them with concrete types"),
        ));
    }
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            format!("{attribute} functions cannot be async"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "variadic functions cannot be exported",
        ));
    }

    let mut names = Vec::new();
    let mut arg_types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.span(),
                    format!("{attribute} goes on a free function, not a method"),
                ));
            }
            FnArg::Typed(typed) => {
                let name = match &*typed.pat {
                    Pat::Ident(ident) => ident.ident.to_string(),
                    Pat::Wild(_) => format!("arg{}", names.len() + 1),
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "name each argument (patterns are not supported here)",
                        ));
                    }
                };
                if let Type::ImplTrait(_) = &*typed.ty {
                    return Err(syn::Error::new(
                        typed.ty.span(),
                        "argument types must be concrete (bool, i64, &str, Option<f64>, ...)",
                    ));
                }
                names.push(name.trim_start_matches("r#").to_string());
                arg_types.push((*typed.ty).clone());
            }
        }
    }

    let ReturnType::Type(_, return_type) = &sig.output else {
        return Err(syn::Error::new(
            sig.ident.span(),
            format!("{attribute} functions must return a value"),
        ));
    };
    let returns_result = result_ok_type(return_type).is_some();

    let ident = &sig.ident;
    let sql_name = options
        .name
        .clone()
        .unwrap_or_else(|| ident.to_string().trim_start_matches("r#").to_string());
    let deterministic = options.deterministic.unwrap_or(true);
    let private = quote!(::weir_udf::__private);

    let params = names.iter().zip(&arg_types).map(|(name, ty)| {
        let ty = with_static_lifetimes(ty);
        quote_spanned!(ty.span()=> #private::field(#name, <#ty as ::weir_udf::ArgValue<'static>>::DATA_TYPE))
    });
    let arg_idents: Vec<_> = (0..names.len())
        .map(|i| format_ident!("__arg{i}"))
        .collect();
    let call = quote!(#ident(#(#arg_idents),*));
    let call = if returns_result {
        quote!(#call)
    } else {
        quote!(::std::result::Result::<_, ::std::convert::Infallible>::Ok(#call))
    };
    let tuple_type = quote!((#(#arg_types,)*));

    let (kind_tokens, results, method) = match kind {
        Kind::Scalar => {
            let value_type =
                with_static_lifetimes(result_ok_type(return_type).unwrap_or(return_type));
            if matches!(&value_type, Type::Tuple(t) if t.elems.is_empty()) {
                return Err(syn::Error::new(
                    return_type.span(),
                    "#[scalar] functions must return a value",
                ));
            }
            let results = quote_spanned!(value_type.span()=>
                ::std::vec![#private::field("result", <#value_type as ::weir_udf::ResultValue>::DATA_TYPE)]);
            let method = quote! {
                fn call_scalar(args: #private::Batch) -> ::std::result::Result<#private::Column, #private::UdfError> {
                    #private::scalar::<#tuple_type, _, _>(&args, |(#(#arg_idents,)*)| #call)
                }
            };
            (quote!(#private::FunctionKind::Scalar), results, method)
        }
        Kind::Table => {
            let item = with_static_lifetimes(&table_item_type(return_type)?);
            let column_count = match &item {
                Type::Tuple(t) => t.elems.len(),
                _ => 1,
            };
            let column_names: Vec<String> = match &options.columns {
                Some((names, span)) => {
                    if names.len() != column_count {
                        return Err(syn::Error::new(
                            *span,
                            format!(
                                "{} column names for rows of {column_count} values",
                                names.len()
                            ),
                        ));
                    }
                    names.clone()
                }
                None => (0..column_count).map(|i| format!("f{i}")).collect(),
            };
            let results = quote_spanned!(item.span()=> {
                let names: &[&str] = &[#(#column_names),*];
                <#item as ::weir_udf::TableRow>::data_types()
                    .into_iter()
                    .zip(names)
                    .map(|(data_type, name)| #private::field(name, data_type))
                    .collect()
            });
            let method = quote! {
                fn call_table(args: #private::Batch) -> ::std::result::Result<#private::TableOutput, #private::UdfError> {
                    #private::table::<#tuple_type, _, _>(&args, |(#(#arg_idents,)*)| #call)
                }
            };
            (quote!(#private::FunctionKind::Table), results, method)
        }
    };

    let vis = &function.vis;
    Ok(quote! {
        #function

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        impl #private::Function for #ident {
            const NAME: &'static str = #sql_name;
            fn spec() -> #private::FunctionSpec {
                #private::FunctionSpec {
                    name: ::std::string::ToString::to_string(#sql_name),
                    kind: #kind_tokens,
                    params: ::std::vec![#(#params),*],
                    results: #results,
                    deterministic: #deterministic,
                }
            }
            #method
        }
    })
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn expand_aggregate(options: Options, block: ItemImpl) -> syn::Result<TokenStream2> {
    let implements_aggregate = block
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|segment| segment.ident == "Aggregate");
    if !implements_aggregate {
        return Err(syn::Error::new(
            block.self_ty.span(),
            "#[aggregate] goes on an `impl weir_udf::Aggregate for YourState` block",
        ));
    }
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new(
            block.generics.span(),
            "an exported aggregate cannot be generic: SQL calls it with concrete types",
        ));
    }
    let Type::Path(self_path) = &*block.self_ty else {
        return Err(syn::Error::new(
            block.self_ty.span(),
            "the state must be a named type",
        ));
    };
    let Some(type_ident) = self_path.path.get_ident().cloned() else {
        return Err(syn::Error::new(
            block.self_ty.span(),
            "implement Aggregate on a type defined in this module, named without a path",
        ));
    };

    let methods: Vec<&syn::ImplItemFn> = block
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Fn(f) => Some(f),
            _ => None,
        })
        .collect();
    let has = |name: &str| methods.iter().any(|m| m.sig.ident == name);
    let (retract, merge) = (has("retract"), has("merge"));

    // Argument names from `fn accumulate(&mut self, (a, b): ...)`, for describe.
    let names: Option<Vec<String>> = methods
        .iter()
        .find(|m| m.sig.ident == "accumulate")
        .and_then(|m| m.sig.inputs.iter().nth(1))
        .and_then(|arg| match arg {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Tuple(tuple) => tuple
                    .elems
                    .iter()
                    .map(|p| match p {
                        Pat::Ident(i) => Some(i.ident.to_string()),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            },
            _ => None,
        });
    let names = names.unwrap_or_default();

    let sql_name = options
        .name
        .unwrap_or_else(|| snake_case(&type_ident.to_string()));
    let deterministic = options.deterministic.unwrap_or(true);
    let private = quote!(::weir_udf::__private);
    let this = quote!(#type_ident);

    Ok(quote! {
        #block

        impl #private::Function for #this {
            const NAME: &'static str = #sql_name;
            fn spec() -> #private::FunctionSpec {
                let names: &[&str] = &[#(#names),*];
                let types = <<#this as ::weir_udf::Aggregate>::Args<'static> as ::weir_udf::ArgTuple<'static>>::data_types();
                let params = types
                    .into_iter()
                    .enumerate()
                    .map(|(i, data_type)| match names.get(i) {
                        ::std::option::Option::Some(name) => #private::field(name, data_type),
                        ::std::option::Option::None => #private::field(&::std::format!("arg{}", i + 1), data_type),
                    })
                    .collect();
                #private::FunctionSpec {
                    name: ::std::string::ToString::to_string(#sql_name),
                    kind: #private::FunctionKind::Aggregate(#private::AggregateCapabilities {
                        retract: #retract,
                        merge: #merge,
                    }),
                    params,
                    results: ::std::vec![#private::field(
                        "result",
                        <<#this as ::weir_udf::Aggregate>::Output as ::weir_udf::ResultValue>::DATA_TYPE,
                    )],
                    deterministic: #deterministic,
                }
            }
            fn aggregate_create() -> ::std::result::Result<::std::vec::Vec<u8>, #private::UdfError> {
                #private::aggregate_create::<#this>()
            }
            fn aggregate_update(
                args: #private::Batch,
                groups: ::std::vec::Vec<u8>,
                states: #private::Column,
                retract: bool,
            ) -> ::std::result::Result<#private::Column, #private::UdfError> {
                #private::aggregate_update::<#this>(&args, &groups, &states, retract)
            }
            fn aggregate_merge(
                left: #private::Column,
                right: #private::Column,
            ) -> ::std::result::Result<#private::Column, #private::UdfError> {
                #private::aggregate_merge::<#this>(&left, &right)
            }
            fn aggregate_finish(states: #private::Column) -> ::std::result::Result<#private::Column, #private::UdfError> {
                #private::aggregate_finish::<#this>(&states)
            }
        }
    })
}
