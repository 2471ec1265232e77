# t/lib/ItmCatalog.pm: a catalog picture of the extension in one database,
# to compare a database updated in place with a fresh CREATE EXTENSION
# (t/046_update_1_1.pl, t/047_update_1_1_1.pl).
#
#   catalog($node, $db)        { part => text }: member objects, the
#                              pg_extension row, the schema, relations,
#                              columns (types, defaults, NOT NULL, comments),
#                              constraints, indexes, triggers, policies,
#                              functions (signatures, results, attributes,
#                              bodies, entry points), views, sequences,
#                              types and privileges (relacl, attacl, proacl,
#                              nspacl, pg_init_privs); each part's lines in
#                              an order of their own keys (names,
#                              descriptions), never the catalog's physical
#                              order, which an update changes.  (An
#                              aggregate's ORDER BY 1 orders by the constant
#                              1, that is not at all: not a column number.)
#   catalog_parts()            the names of those parts, sorted
#   compare_catalog($node, $db, $fresh, $label, $what)
#                              one assertion per part: "$label: PART as in
#                              $what", with a diff when it fails
#   detached_schema($node, $db)
#                              pg_dump --schema-only after every member is
#                              detached (ALTER EXTENSION ... DROP), so that
#                              pg_dump writes their definitions out (see
#                              t/040_upgrade.pl); the database keeps no
#                              extension members afterwards
#   diff_text($a, $b)          the first lines of diff -u
package ItmCatalog;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run ();
use PostgreSQL::Test::Utils ();
use Test::More ();

our @EXPORT_OK = qw(catalog catalog_parts compare_catalog detach_members detached_schema diff_text);

my $ext = 'invitetomedia';

my %catalog_sql = (
	members => q{
		SELECT string_agg(pg_describe_object(classid, objid, 0), E'\n'
		                  ORDER BY pg_describe_object(classid, objid, 0))
		  FROM pg_depend
		 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'invitetomedia')},
	extension => q{
		SELECT concat_ws(' ', e.extversion, e.extrelocatable, e.extnamespace::regnamespace,
		       (SELECT string_agg(c::regclass || '=' || coalesce(w, ''), ',' ORDER BY c::regclass::text)
		          FROM unnest(e.extconfig, e.extcondition) AS u(c, w)))
		  FROM pg_extension e WHERE e.extname = 'invitetomedia'},
	schema => q{
		SELECT concat_ws(' ', n.nspname, n.nspowner::regrole,
		       (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(n.nspacl) x),
		       obj_description(n.oid, 'pg_namespace'))
		  FROM pg_namespace n WHERE n.nspname = 'invitetomedia'},
	relations => q{
		SELECT string_agg(concat_ws(' ', c.relname, c.relkind, c.relpersistence, c.reloptions,
		                  c.relrowsecurity, c.relforcerowsecurity, c.relowner::regrole,
		                  (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x),
		                  obj_description(c.oid, 'pg_class')), E'\n' ORDER BY c.relname)
		  FROM pg_class c WHERE c.relnamespace = 'invitetomedia'::regnamespace},
	columns => q{
		SELECT string_agg(line, E'\n' ORDER BY relname, pos)
		  FROM (SELECT c.relname, a.attnum AS pos,
		               concat_ws(' ', c.relname,
		                   row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
		                   format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
		                   a.attgenerated, a.attcollation::regcollation, a.attstattarget,
		                   pg_get_expr(d.adbin, d.adrelid),
		                   (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x),
		                   col_description(c.oid, a.attnum)) AS line
		          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
		         WHERE c.relnamespace = 'invitetomedia'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
		           AND a.attnum > 0 AND NOT a.attisdropped) cols},
	constraints => q{
		SELECT string_agg(concat_ws(' ', c.conrelid::regclass, c.conname, c.contype,
		                  pg_get_constraintdef(c.oid), c.condeferrable, c.convalidated,
		                  obj_description(c.oid, 'pg_constraint')), E'\n'
		                  ORDER BY c.conrelid::regclass::text, c.conname)
		  FROM pg_constraint c WHERE c.connamespace = 'invitetomedia'::regnamespace},
	indexes => q{
		SELECT string_agg(concat_ws(' ', pg_get_indexdef(i.indexrelid), i.indisunique, i.indisprimary,
		                  i.indimmediate), E'\n' ORDER BY c.relname, i.indexrelid::regclass::text)
		  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		 WHERE c.relnamespace = 'invitetomedia'::regnamespace},
	triggers => q{
		SELECT string_agg(concat_ws(' ', pg_get_triggerdef(t.oid), t.tgenabled), E'\n'
		                  ORDER BY c.relname, t.tgname)
		  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		 WHERE c.relnamespace = 'invitetomedia'::regnamespace AND NOT t.tgisinternal},
	policies => q{
		SELECT string_agg(concat_ws(' ', tablename, policyname, permissive, roles, cmd, qual, with_check),
		                  E'\n' ORDER BY tablename, policyname)
		  FROM pg_policies WHERE schemaname = 'invitetomedia'},
	functions => q{
		SELECT string_agg(concat_ws(' | ', p.oid::regprocedure, pg_get_function_arguments(p.oid),
		                  pg_get_function_result(p.oid), p.prokind, p.provolatile, p.proparallel,
		                  p.prosecdef, p.proisstrict, p.proleakproof, p.proretset, p.procost, p.prorows,
		                  p.proconfig, l.lanname, p.probin, p.prosrc, p.proowner::regrole,
		                  (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x),
		                  obj_description(p.oid, 'pg_proc')), E'\n' ORDER BY p.oid::regprocedure::text)
		  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
		 WHERE p.pronamespace = 'invitetomedia'::regnamespace},
	views => q{
		SELECT string_agg(c.relname || ': ' || pg_get_viewdef(c.oid), E'\n' ORDER BY c.relname)
		  FROM pg_class c WHERE c.relnamespace = 'invitetomedia'::regnamespace AND c.relkind IN ('v', 'm')},
	sequences => q{
		SELECT string_agg(concat_ws(' ', s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart,
		                  s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
		                  (SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
		                     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		                    WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
		                      AND d.deptype = 'a')), E'\n' ORDER BY s.seqrelid::regclass::text)
		  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
		 WHERE c.relnamespace = 'invitetomedia'::regnamespace},
	types => q{
		SELECT string_agg(t.typname || ' ' || t.typtype::text, E'\n' ORDER BY t.typname)
		  FROM pg_type t WHERE t.typnamespace = 'invitetomedia'::regnamespace},
	init_privs => q{
		SELECT string_agg(format('%s: %s %s', pg_describe_object(i.classoid, i.objoid, i.objsubid),
		                         i.privtype, i.initprivs), E'\n'
		                  ORDER BY pg_describe_object(i.classoid, i.objoid, i.objsubid), i.privtype,
		                           i.initprivs::text)
		  FROM pg_init_privs i
		  JOIN pg_depend d ON d.classid = i.classoid AND d.objid = i.objoid AND d.objsubid = 0
		 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'invitetomedia')},
);

sub catalog_parts
{
	return sort keys %catalog_sql;
}

sub catalog
{
	my ($node, $db) = @_;
	return { map { $_ => $node->safe_psql($db, $catalog_sql{$_}) } keys %catalog_sql };
}

sub compare_catalog
{
	my ($node, $db, $fresh, $label, $what) = @_;
	my $c = catalog($node, $db);
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	for my $k (catalog_parts())
	{
		Test::More::ok($c->{$k} eq $fresh->{$k}, "$label: $k as in $what")
		  or Test::More::diag(diff_text($fresh->{$k}, $c->{$k}));
	}
	return;
}

# detach_members(NODE, DB): every member of the extension in DB detached
# (ALTER EXTENSION ... DROP), so that pg_dump writes each out as a plain
# object
sub detach_members
{
	my ($node, $db) = @_;
	my $sql = $node->safe_psql($db, qq{
		SELECT string_agg(format('ALTER EXTENSION $ext DROP %s %s;', upper(i.type), i.identity), E'\\n')
		  FROM pg_depend d, pg_identify_object(d.classid, d.objid, 0) i
		 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = '$ext')
		   -- since 18 the row type of a table or view and their array
		   -- types are members too: they go with the relation (and an
		   -- array type with its element type)
		   AND NOT EXISTS (SELECT 1 FROM pg_type t
		                    WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
		                      AND ((t.typcategory = 'A' AND t.typelem <> 0)
		                           OR EXISTS (SELECT 1 FROM pg_class c
		                                       WHERE c.oid = t.typrelid AND c.relkind <> 'c')))});
	$node->safe_psql($db, $sql);
	return;
}

sub detached_schema
{
	my ($node, $db) = @_;
	detach_members($node, $db);
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '-h', $node->host, '-p', $node->port, '--schema-only', $db ],
		'>', \$out, '2>', \$err)
	  or die "pg_dump $db failed: $err";
	$out =~ s/^--.*\n//mg;
	$out =~ s/^\\(?:un)?restrict .*\n//mg;
	return $out;
}

sub diff_text
{
	my ($a, $b) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir;
	open my $fa, '>', "$dir/fresh" or die;
	print $fa "$a\n";
	close $fa;
	open my $fb, '>', "$dir/updated" or die;
	print $fb "$b\n";
	close $fb;
	my ($out, $err);
	IPC::Run::run([ 'diff', '-u', "$dir/fresh", "$dir/updated" ], '>', \$out, '2>', \$err);
	my @l = split /\n/, $out // '';
	return join("\n", @l[ 0 .. ($#l < 80 ? $#l : 80) ]);
}

1;
