# t/lib/ItmVersion.pm: extension versions as the TAP tests compare them, and
# the list of the extension's versions, in one place.
package ItmVersion;

use strict;
use warnings;
use Exporter 'import';
our @EXPORT_OK = qw(vercmp default_version released_versions next_versions known_versions
  default_release);

# The versions of the extension, oldest first.  Every version that an
# install or update script of the tree (invitetomedia--*.sql) reaches is
# listed here, and nothing else: t/040_upgrade.pl and t/100_meta.pl check
# both ways, so a new update script must be added here on purpose.
#
#   @released  shipped versions.  The newest is the control file's
#              default_version (what CREATE EXTENSION without VERSION and
#              a plain ALTER EXTENSION ... UPDATE reach).
#   @next      versions under construction: their scripts exist and are
#              tested (installed with VERSION, reached with UPDATE TO, and
#              compared with a fresh install as every version is), but
#              default_version does not name them yet.  Each is newer than
#              default_version and reachable from it.
#
# Releasing a version under construction: move it from @next to @released
# and set default_version in invitetomedia.control (and META.json,
# debian/changelog) to it.
my @released = qw(1.0 1.0.1 1.1 1.1.1 2.0);
my @next = qw();

sub released_versions { return @released; }
sub next_versions { return @next; }
sub known_versions { return (@released, @next); }

# the version default_version must name: the newest released one
sub default_release { return $released[-1]; }

# compare dotted versions part by part, numerically where both are numbers
sub vercmp
{
	my @a = split /\./, $_[0];
	my @b = split /\./, $_[1];
	while (@a || @b)
	{
		my ($x, $y) = (shift(@a) // 0, shift(@b) // 0);
		my $c = ($x =~ /^\d+$/ && $y =~ /^\d+$/) ? $x <=> $y : $x cmp $y;
		return $c if $c;
	}
	return 0;
}

# the control file's default_version (what CREATE EXTENSION without VERSION
# installs), read from the tree: $ENV{ITM_SRCDIR}, else the current
# directory (make installcheck runs the scripts from the top of the tree)
sub default_version
{
	my $file = ($ENV{ITM_SRCDIR} || '.') . '/invitetomedia.control';
	open my $fh, '<', $file or die "cannot read $file: $!\n";
	local $/;
	my $control = <$fh>;
	close $fh;
	$control =~ /^\s*default_version\s*=\s*'([^']+)'/m
	  or die "no default_version in $file\n";
	return $1;
}

1;
