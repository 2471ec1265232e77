# t/lib/ItmVersion.pm: extension versions as the TAP tests compare them.
package ItmVersion;

use strict;
use warnings;
use Exporter 'import';
our @EXPORT_OK = qw(vercmp default_version);

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
